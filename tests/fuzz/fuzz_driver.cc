// A deterministic mutation fuzzer for LLVMFuzzerTestOneInput targets, for builds without
// libFuzzer (the normal GCC build, and ctest's short runs). It runs every seed file, then
// mutates seeds and earlier inputs with a fixed-seed generator until an iteration or time
// bound: the same command explores the same inputs. A crash writes the input to
// `crash-<target>-<n>` in the working directory before the process dies.
//
//   <target> [--seconds=S] [--iterations=N] [--seed=K] [--max_len=L] CORPUS_DIR_OR_FILE...
//   <target> --run FILE...   (reproduce: run the given inputs once each)
//
// With clang, the same targets link against libFuzzer instead (see tests/fuzz/README.md).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// The input being run, for the crash handler (which may only use async-signal-safe calls).
const uint8_t* g_input = nullptr;
size_t g_input_size = 0;
char g_crash_path[256] = "crash-input";

void OnCrash(int sig) {
  const int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    if (g_input_size > 0) (void)!write(fd, g_input, g_input_size);
    close(fd);
  }
  static const char kMsg[] = "fuzz driver: crash; the input is in ";
  (void)!write(2, kMsg, sizeof(kMsg) - 1);
  (void)!write(2, g_crash_path, strlen(g_crash_path));
  (void)!write(2, "\n", 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

void RunOne(const std::string& input) {
  g_input = reinterpret_cast<const uint8_t*>(input.data());
  g_input_size = input.size();
  LLVMFuzzerTestOneInput(g_input, g_input_size);
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<std::string> LoadSeeds(const std::vector<std::string>& paths) {
  std::vector<std::filesystem::path> files;
  for (const std::string& p : paths) {
    if (std::filesystem::is_directory(p)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else {
      files.emplace_back(p);
    }
  }
  std::sort(files.begin(), files.end());  // Directory order is not deterministic.
  std::vector<std::string> seeds;
  for (const auto& f : files) seeds.push_back(ReadFile(f));
  return seeds;
}

// Bytes that often matter to parsers: delimiters, quotes, escapes, extremes.
constexpr uint8_t kInteresting[] = {0,    1,    '"',  '\\', '{',  '}',  '[',  ']',  ':',
                                    ',',  '\n', '\r', ' ',  '%',  '-',  '0',  '9',  0x7f,
                                    0x80, 0xbf, 0xc0, 0xe2, 0xf0, 0xf4, 0xff, '<',  '>'};

std::string Mutate(std::string s, const std::vector<std::string>& pool, std::mt19937_64& rng,
                   size_t max_len) {
  auto below = [&rng](size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng() % n); };
  const int rounds = 1 + static_cast<int>(below(4));
  for (int r = 0; r < rounds; ++r) {
    switch (below(7)) {
      case 0:  // Flip a bit.
        if (!s.empty()) s[below(s.size())] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // Set a byte to an interesting value.
        if (!s.empty()) {
          s[below(s.size())] = static_cast<char>(kInteresting[below(sizeof(kInteresting))]);
        }
        break;
      case 2: {  // Insert random bytes.
        const size_t n = 1 + below(8);
        std::string bytes;
        for (size_t i = 0; i < n; ++i) bytes += static_cast<char>(rng());
        s.insert(below(s.size() + 1), bytes);
        break;
      }
      case 3:  // Erase a range.
        if (!s.empty()) {
          const size_t at = below(s.size());
          s.erase(at, 1 + below(std::min<size_t>(16, s.size() - at)));
        }
        break;
      case 4:  // Duplicate a range.
        if (!s.empty()) {
          const size_t at = below(s.size());
          s.insert(below(s.size() + 1), s.substr(at, 1 + below(32)));
        }
        break;
      case 5: {  // Splice a piece of another input.
        const std::string& other = pool[below(pool.size())];
        if (!other.empty()) {
          const size_t at = below(other.size());
          s.insert(below(s.size() + 1), other.substr(at, 1 + below(64)));
        }
        break;
      }
      case 6:  // Truncate.
        if (!s.empty()) s.resize(below(s.size()));
        break;
    }
  }
  if (s.size() > max_len) s.resize(max_len);
  return s;
}

bool Flag(const std::string& arg, const char* name, long long* out) {
  const std::string prefix = std::string("--") + name + "=";
  if (arg.rfind(prefix, 0) != 0) return false;
  *out = std::stoll(arg.substr(prefix.size()));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long long seconds = 10, iterations = 1'000'000, seed = 1, max_len = 4096;
  bool run_only = false;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--run") {
      run_only = true;
    } else if (!Flag(arg, "seconds", &seconds) && !Flag(arg, "iterations", &iterations) &&
               !Flag(arg, "seed", &seed) && !Flag(arg, "max_len", &max_len)) {
      paths.push_back(arg);
    }
  }
  const std::string name = std::filesystem::path(argv[0]).filename().string();
  std::snprintf(g_crash_path, sizeof(g_crash_path), "crash-%s", name.c_str());
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) signal(sig, OnCrash);

  std::vector<std::string> pool = LoadSeeds(paths);
  for (const std::string& s : pool) RunOne(s);
  if (run_only) {
    std::printf("%s: ran %zu inputs\n", name.c_str(), pool.size());
    return 0;
  }
  if (pool.empty()) pool.emplace_back();
  const size_t seeds = pool.size();
  std::mt19937_64 rng(static_cast<uint64_t>(seed));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  long long done = 0;
  for (; done < iterations; ++done) {
    if ((done & 255) == 0 && std::chrono::steady_clock::now() >= deadline) break;
    const std::string& base = pool[static_cast<size_t>(rng() % pool.size())];
    std::string input = Mutate(base, pool, rng, static_cast<size_t>(max_len));
    RunOne(input);
    // Keep a bounded window of recent inputs beside the seeds, so that mutations stack.
    if (pool.size() < seeds + 256) {
      pool.push_back(std::move(input));
    } else {
      pool[seeds + static_cast<size_t>(rng() % 256)] = std::move(input);
    }
  }
  std::printf("%s: %zu seeds, %lld mutated inputs, no crash\n", name.c_str(), seeds, done);
  return 0;
}
