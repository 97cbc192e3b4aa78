#include "client/recall/results.h"

#include <cmath>
#include <fstream>
#include <map>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace mla::recall {
namespace {

using Json = nlohmann::json;

// The cell a trial belongs to; depths are compared at the key's precision.
using CellId = std::tuple<NeedleKind, int, std::string>;

CellId CellOf(const TrialKey& k) { return {k.kind, k.length, absl::StrFormat("%.4f", k.depth)}; }

}  // namespace

std::string ToJsonLine(const TrialResult& r) {
  Json j;
  j["length"] = r.key.length;
  j["depth"] = r.key.depth;
  j["kind"] = NeedleKindName(r.key.kind);
  j["sample"] = r.key.sample;
  j["seed"] = r.key.seed;
  j["model"] = r.model;
  j["prompt_tokens"] = r.prompt_tokens;
  j["needle_depths"] = r.needle_depths;
  j["asked_depth"] = r.asked_depth;
  j["expected"] = r.expected;
  j["generated"] = r.generated;
  j["generated_tokens"] = r.generated_tokens;
  j["exact_match"] = r.exact_match;
  j["answer_logprob"] = r.answer_logprob.has_value() ? Json(*r.answer_logprob) : Json(nullptr);
  if (r.indexer_recall.has_value()) j["indexer_recall"] = *r.indexer_recall;
  if (!r.ok()) j["error"] = r.error;
  j["seconds"] = r.seconds;
  // Generated text may hold invalid UTF-8 (a byte-level model can emit any byte).
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

absl::StatusOr<TrialResult> FromJsonLine(absl::string_view line) {
  const Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  TrialResult r;
  try {
    r.key.length = j.at("length").get<int>();
    r.key.depth = j.at("depth").get<double>();
    MLA_ASSIGN_OR_RETURN(r.key.kind, ParseNeedleKind(j.at("kind").get<std::string>()));
    r.key.sample = j.at("sample").get<int>();
    r.key.seed = j.at("seed").get<uint64_t>();
    r.model = j.value("model", "");
    r.prompt_tokens = j.value("prompt_tokens", 0);
    r.needle_depths = j.value("needle_depths", std::vector<double>{});
    r.asked_depth = j.value("asked_depth", 0.0);
    r.expected = j.value("expected", "");
    r.generated = j.value("generated", "");
    r.generated_tokens = j.value("generated_tokens", 0);
    r.exact_match = j.value("exact_match", false);
    if (j.contains("indexer_recall") && j["indexer_recall"].is_number()) {
      r.indexer_recall = j["indexer_recall"].get<double>();
    }
    if (j.contains("answer_logprob") && j["answer_logprob"].is_number()) {
      r.answer_logprob = j["answer_logprob"].get<double>();
    }
    r.error = j.value("error", "");
    r.seconds = j.value("seconds", 0.0);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad result line: ", e.what()));
  }
  return r;
}

absl::StatusOr<std::vector<TrialResult>> ReadResults(const std::string& path, int* skipped) {
  std::vector<TrialResult> results;
  if (skipped != nullptr) *skipped = 0;
  std::ifstream in(path);
  if (!in) return results;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    absl::StatusOr<TrialResult> r = FromJsonLine(line);
    if (r.ok()) {
      results.push_back(*std::move(r));
    } else if (skipped != nullptr) {
      ++*skipped;
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return results;
}

std::set<std::string> DoneKeys(const std::vector<TrialResult>& results) {
  std::set<std::string> done;
  for (const TrialResult& r : results) {
    if (r.ok()) done.insert(r.key.ToString());
  }
  return done;
}

absl::StatusOr<std::unique_ptr<ResultsWriter>> ResultsWriter::Open(const std::string& path,
                                                                   bool fresh) {
  std::FILE* file = std::fopen(path.c_str(), fresh ? "w+" : "a+");
  if (file == nullptr) return absl::UnavailableError(absl::StrCat("cannot open ", path));
  // A crash mid-write can leave a torn last line: end it, or the next line would join it.
  // (A stream switching from reading to writing needs a seek in between.)
  const bool torn = std::fseek(file, -1, SEEK_END) == 0 && std::fgetc(file) != '\n';
  std::fseek(file, 0, SEEK_END);
  if (torn) std::fputc('\n', file);
  return std::unique_ptr<ResultsWriter>(new ResultsWriter(file));
}

ResultsWriter::~ResultsWriter() {
  absl::MutexLock lock(&mu_);
  std::fclose(file_);
}

absl::Status ResultsWriter::Append(const TrialResult& result) {
  const std::string line = ToJsonLine(result) + "\n";
  absl::MutexLock lock(&mu_);
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    return absl::UnavailableError("cannot append to results.jsonl");
  }
  return absl::OkStatus();
}

std::vector<CellSummary> Summarize(const std::vector<TrialResult>& results) {
  // The latest result per trial, a success replacing any failure.
  std::map<std::string, const TrialResult*> latest;
  for (const TrialResult& r : results) {
    const TrialResult*& slot = latest[r.key.ToString()];
    if (slot == nullptr || r.ok() || !slot->ok()) slot = &r;
  }
  struct Acc {
    CellSummary cell;
    int matches = 0;
    int scored = 0;
    double logprob_sum = 0;
    int recalled = 0;
    double recall_sum = 0;
  };
  std::map<CellId, Acc> cells;
  for (const auto& [key, r] : latest) {
    Acc& a = cells[CellOf(r->key)];
    a.cell.length = r->key.length;
    a.cell.depth = r->key.depth;
    a.cell.kind = r->key.kind;
    if (!r->ok()) {
      ++a.cell.errors;
      continue;
    }
    ++a.cell.n;
    a.matches += r->exact_match ? 1 : 0;
    if (r->answer_logprob.has_value()) {
      ++a.scored;
      a.logprob_sum += *r->answer_logprob;
    }
    if (r->indexer_recall.has_value()) {
      ++a.recalled;
      a.recall_sum += *r->indexer_recall;
    }
  }
  std::vector<CellSummary> out;
  for (auto& [id, a] : cells) {
    if (a.cell.n > 0) a.cell.exact_match_rate = static_cast<double>(a.matches) / a.cell.n;
    if (a.scored > 0) a.cell.mean_answer_logprob = a.logprob_sum / a.scored;
    if (a.recalled > 0) a.cell.mean_indexer_recall = a.recall_sum / a.recalled;
    out.push_back(a.cell);
  }
  return out;
}

std::string SummaryCsv(const std::vector<CellSummary>& cells) {
  std::string csv =
      "length,depth,kind,n,exact_match_rate,mean_answer_logprob,errors,mean_indexer_recall\n";
  auto optional = [](const std::optional<double>& v) {
    return v.has_value() ? absl::StrFormat("%.4f", *v) : "";
  };
  for (const CellSummary& c : cells) {
    absl::StrAppendFormat(&csv, "%d,%.4f,%s,%d,%.4f,%s,%d,%s\n", c.length, c.depth,
                          NeedleKindName(c.kind), c.n, c.exact_match_rate,
                          optional(c.mean_answer_logprob), c.errors,
                          optional(c.mean_indexer_recall));
  }
  return csv;
}

std::string SummaryJson(const std::vector<CellSummary>& cells, const SummaryInfo& info) {
  Json j;
  j["model"] = info.model;
  j["backend"] = info.backend;
  j["logprob_scoring"] = info.logprob_scoring;
  if (!info.note.empty()) j["note"] = info.note;
  Json rows = Json::array();
  for (const CellSummary& c : cells) {
    rows.push_back(
        {{"length", c.length},
         {"depth", c.depth},
         {"kind", NeedleKindName(c.kind)},
         {"n", c.n},
         {"errors", c.errors},
         {"exact_match_rate", c.exact_match_rate},
         {"mean_answer_logprob",
          c.mean_answer_logprob.has_value() ? Json(*c.mean_answer_logprob) : Json(nullptr)},
         {"mean_indexer_recall",
          c.mean_indexer_recall.has_value() ? Json(*c.mean_indexer_recall) : Json(nullptr)}});
  }
  j["cells"] = std::move(rows);
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace mla::recall
