// Needle-in-a-haystack trials: what a trial is (its key) and the needles and question
// it asks about. The text format is shared with the training data of the demo model
// (docs/LONG_CONTEXT.md), so any change here must be made there too.
#ifndef MLA_CLIENT_RECALL_NEEDLE_H_
#define MLA_CLIENT_RECALL_NEEDLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla::recall {

enum class NeedleKind { kPasskey, kKv, kMulti };

absl::StatusOr<NeedleKind> ParseNeedleKind(absl::string_view name);
const char* NeedleKindName(NeedleKind kind);

// Identifies one trial of a sweep. Two trials with equal keys ask the same question
// over the same haystack, on any machine.
struct TrialKey {
  int length = 0;    // Requested prompt length in tokens (BOS + haystack + needles + question).
  double depth = 0;  // Requested needle depth in [0, 1], fraction of the haystack's tokens.
  NeedleKind kind = NeedleKind::kPasskey;
  int sample = 0;     // Index within the cell.
  uint64_t seed = 0;  // The sweep's seed.

  // A stable text form, used to recognise finished trials when resuming. The depth
  // is written with 4 decimals, so depths closer than 1e-4 are the same cell.
  std::string ToString() const;
};

// A small, portable pseudo-random generator (SplitMix64): the standard library's
// distributions differ between implementations, and a sweep must be reproducible.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [lo, hi] (inclusive); the modulo bias is negligible for these ranges.
  int64_t Uniform(int64_t lo, int64_t hi);

 private:
  uint64_t state_;
};

struct Needle {
  std::string sentence;  // Inserted between two haystack sentences.
  double depth = 0;      // Requested depth of this needle.
};

struct NeedleTask {
  std::vector<Needle> needles;  // One for passkey and kv, three for multi.
  int asked = 0;                // Index of the needle the question asks about.
  std::string question;         // Appended right after the haystack; starts with "\n".
  std::string answer;           // The expected continuation of the question.
  uint64_t haystack_seed = 0;   // Chooses where in the corpus the haystack starts.
};

// The needles, question and answer of a trial. They depend on the seed, length, kind
// and sample but not on the depth, so that the cells of one heatmap column hold the
// same haystacks and needle values, only moved.
NeedleTask MakeNeedleTask(const TrialKey& key);

// The depths of the three multi-needle needles: the requested one first, the others a
// third and two thirds of the haystack further on, wrapping around.
std::vector<double> MultiNeedleDepths(double depth);

}  // namespace mla::recall

#endif  // MLA_CLIENT_RECALL_NEEDLE_H_
