// Tokenizer throughput on one core with the DeepSeek-V3 tokenizer. The corpus is this
// repository's own Markdown documents and C++ sources (English prose and code), read at
// start-up; bytes/second counts input text for Encode and output text for Decode.
//
//   build/<dir>/bench/tokenizer_bench --benchmark_min_time=2s
//
// MLA_TOKENIZER_JSON / MLA_TOKENIZER_CORPUS_DIR override the tokenizer file and the corpus
// root.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tokenizer/streaming_detokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace mla {
namespace {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

const Tokenizer& GetTokenizer() {
  static const Tokenizer* tokenizer = [] {
    const std::string path =
        EnvOr("MLA_TOKENIZER_JSON",
              std::string(MLA_SOURCE_DIR) + "/tests/data/tokenizer/deepseek-v3/tokenizer.json.xz");
    auto loaded = Tokenizer::Load(path);
    if (!loaded.ok()) {
      std::fprintf(stderr, "cannot load %s: %s\n", path.c_str(),
                   std::string(loaded.status().message()).c_str());
      std::exit(1);
    }
    return loaded->release();
  }();
  return *tokenizer;
}

// About 2 MB of *.md, *.h and *.cc text from the repository, in a stable order.
const std::string& Corpus() {
  static const std::string* corpus = [] {
    namespace fs = std::filesystem;
    const fs::path root = EnvOr("MLA_TOKENIZER_CORPUS_DIR", MLA_SOURCE_DIR);
    std::vector<fs::path> files;
    for (const char* dir : {"docs", "engine", "server", "client", "bench", "tests"}) {
      if (!fs::exists(root / dir)) continue;
      for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
        const std::string ext = entry.path().extension().string();
        if (entry.is_regular_file() && (ext == ".md" || ext == ".h" || ext == ".cc")) {
          files.push_back(entry.path());
        }
      }
    }
    std::sort(files.begin(), files.end());
    auto* text = new std::string();
    while (text->size() < (2u << 20) && !files.empty()) {
      for (const fs::path& file : files) {
        std::ifstream in(file, std::ios::binary);
        std::stringstream contents;
        contents << in.rdbuf();
        *text += contents.str();
        if (text->size() >= (2u << 20)) break;
      }
    }
    return text;
  }();
  return *corpus;
}

// Steady state: the word cache is warm after the first pass over the corpus.
void BM_Encode(benchmark::State& state) {
  const Tokenizer& tokenizer = GetTokenizer();
  const std::string& text = Corpus();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tokenizer.Encode(text, false);
    tokens = ids->size();
    benchmark::DoNotOptimize(ids->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["bytes_per_token"] = static_cast<double>(text.size()) / tokens;
}
BENCHMARK(BM_Encode)->Unit(benchmark::kMillisecond);

// Every word goes through BPE merging: the cache is emptied before each pass.
void BM_EncodeColdCache(benchmark::State& state) {
  const Tokenizer& tokenizer = GetTokenizer();
  const std::string& text = Corpus();
  for (auto _ : state) {
    state.PauseTiming();
    tokenizer.ClearCache();
    state.ResumeTiming();
    auto ids = tokenizer.Encode(text, false);
    benchmark::DoNotOptimize(ids->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_EncodeColdCache)->Unit(benchmark::kMillisecond);

void BM_Decode(benchmark::State& state) {
  const Tokenizer& tokenizer = GetTokenizer();
  const std::vector<int32_t> ids = *tokenizer.Encode(Corpus(), false);
  for (auto _ : state) {
    auto text = tokenizer.Decode(ids, false);
    benchmark::DoNotOptimize(text->data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Corpus().size()));
}
BENCHMARK(BM_Decode)->Unit(benchmark::kMillisecond);

void BM_StreamingDetokenize(benchmark::State& state) {
  const Tokenizer& tokenizer = GetTokenizer();
  const std::vector<int32_t> ids = *tokenizer.Encode(Corpus(), false);
  for (auto _ : state) {
    StreamingDetokenizer detokenizer(&tokenizer);
    size_t bytes = 0;
    for (int32_t id : ids) bytes += detokenizer.Add(id)->size();
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * Corpus().size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * ids.size()));
}
BENCHMARK(BM_StreamingDetokenize)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mla

BENCHMARK_MAIN();
