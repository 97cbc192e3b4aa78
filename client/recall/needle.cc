#include "client/recall/needle.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mla::recall {
namespace {

constexpr int kMultiNeedles = 3;

std::string Digits(Rng& rng, int64_t lo, int64_t hi) { return absl::StrCat(rng.Uniform(lo, hi)); }

std::string Letters(Rng& rng, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('A' + rng.Uniform(0, 25)));
  return s;
}

std::string KvSentence(const std::string& key, const std::string& value) {
  return absl::StrCat("The value of key ", key, " is ", value, ".");
}

std::string KvQuestion(const std::string& key) {
  return absl::StrCat("\nWhat is the value of key ", key, "? The value of key ", key, " is ");
}

uint64_t Mix(uint64_t h, uint64_t v) {
  Rng r(h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
  return r.Next();
}

// Three kv needles with distinct keys and values (so the question is unambiguous),
// and a question about one of them.
void AddMultiNeedles(double depth, Rng& rng, NeedleTask& task) {
  std::vector<std::string> keys, values;
  while (keys.size() < kMultiNeedles) {
    std::string k = Letters(rng, 4);
    std::string v = Digits(rng, 1000, 9999);
    bool clash = false;
    for (size_t i = 0; i < keys.size(); ++i) clash |= keys[i] == k || values[i] == v;
    if (clash) continue;
    keys.push_back(std::move(k));
    values.push_back(std::move(v));
  }
  const std::vector<double> depths = MultiNeedleDepths(depth);
  for (int i = 0; i < kMultiNeedles; ++i) {
    task.needles.push_back({KvSentence(keys[i], values[i]), depths[i]});
  }
  task.asked = static_cast<int>(rng.Uniform(0, kMultiNeedles - 1));
  task.question = KvQuestion(keys[task.asked]);
  task.answer = values[task.asked];
}

}  // namespace

absl::StatusOr<NeedleKind> ParseNeedleKind(absl::string_view name) {
  if (name == "passkey") return NeedleKind::kPasskey;
  if (name == "kv") return NeedleKind::kKv;
  if (name == "multi") return NeedleKind::kMulti;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown needle kind '", std::string(name), "' (passkey, kv or multi)"));
}

const char* NeedleKindName(NeedleKind kind) {
  switch (kind) {
    case NeedleKind::kPasskey:
      return "passkey";
    case NeedleKind::kKv:
      return "kv";
    case NeedleKind::kMulti:
      return "multi";
  }
  return "?";
}

std::string TrialKey::ToString() const {
  return absl::StrFormat("%d/%.4f/%s/%d/%d", length, depth, NeedleKindName(kind), sample, seed);
}

uint64_t Rng::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int64_t Rng::Uniform(int64_t lo, int64_t hi) {
  const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int64_t>(Next() % span);
}

std::vector<double> MultiNeedleDepths(double depth) {
  std::vector<double> depths;
  for (int i = 0; i < kMultiNeedles; ++i) {
    double d = depth + static_cast<double>(i) / kMultiNeedles;
    if (d > 1.0) d -= 1.0;
    depths.push_back(d);
  }
  return depths;
}

NeedleTask MakeNeedleTask(const TrialKey& key) {
  uint64_t h = Mix(key.seed, static_cast<uint64_t>(key.length));
  h = Mix(h, static_cast<uint64_t>(key.kind));
  h = Mix(h, static_cast<uint64_t>(key.sample));
  Rng rng(h);
  NeedleTask task;
  task.haystack_seed = rng.Next();
  switch (key.kind) {
    case NeedleKind::kPasskey: {
      const std::string d = Digits(rng, 10000, 99999);
      task.needles.push_back(
          {absl::StrCat("The pass key is ", d, ". Remember it. ", d, " is the pass key."),
           key.depth});
      task.question = "\nWhat is the pass key? The pass key is ";
      task.answer = d;
      break;
    }
    case NeedleKind::kKv: {
      const std::string k = Letters(rng, 4);
      const std::string v = Digits(rng, 1000, 9999);
      task.needles.push_back({KvSentence(k, v), key.depth});
      task.question = KvQuestion(k);
      task.answer = v;
      break;
    }
    case NeedleKind::kMulti:
      AddMultiNeedles(key.depth, rng, task);
      break;
  }
  return task;
}

}  // namespace mla::recall
