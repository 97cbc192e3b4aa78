#include "client/recall/haystack.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace mla::recall {
namespace {

// Rounds of whole-prompt counting and resizing; byte-level tokenizers need one or two.
constexpr int kMaxRounds = 4;
// A window longer than this many sentences means the corpus sentences count as zero
// tokens: stop rather than loop forever.
constexpr size_t kMaxWindowSentences = 1 << 22;

struct Piece {
  std::string text;
  int tokens = 0;
};

// Pieces are joined with single spaces, so each is counted with the space before it.
absl::StatusOr<int> CountJoined(TokenCounter& counter, const std::string& text) {
  return counter.CountPiece(absl::StrCat(" ", text));
}

// Cuts words off the front of `piece` until it has at most `want` tokens; the piece
// becomes empty when even its last word alone is too long. Binary search: the count
// shrinks as words are dropped.
absl::Status TrimFront(TokenCounter& counter, int want, Piece& piece) {
  const std::vector<std::string> words = absl::StrSplit(piece.text, ' ');
  size_t lo = 1, hi = words.size();  // The answer is in [lo, hi]; hi = drop everything.
  std::vector<int> counts(words.size() + 1, 0);
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    const std::string text = absl::StrJoin(words.begin() + mid, words.end(), " ");
    MLA_ASSIGN_OR_RETURN(counts[mid], CountJoined(counter, text));
    if (counts[mid] <= want) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  piece.text = absl::StrJoin(words.begin() + lo, words.end(), " ");
  piece.tokens = lo == words.size() ? 0 : counts[lo];
  return absl::OkStatus();
}

// Consecutive sentences from `start` whose counts add up to about `budget` tokens.
absl::StatusOr<std::vector<Piece>> Window(const Corpus& corpus, size_t start, int budget,
                                          TokenCounter& counter) {
  std::vector<Piece> window;
  const std::vector<std::string>& sentences = corpus.sentences();
  int sum = 0;
  for (size_t i = start; sum < budget; ++i) {
    if (window.size() > kMaxWindowSentences) {
      return absl::InternalError("the corpus sentences count as no tokens");
    }
    Piece p{sentences[i % sentences.size()], 0};
    MLA_ASSIGN_OR_RETURN(p.tokens, CountJoined(counter, p.text));
    sum += p.tokens;
    window.push_back(std::move(p));
  }
  int excess = sum - budget;
  size_t front = 0;
  while (excess > 0 && front + 1 < window.size() && excess >= window[front].tokens) {
    excess -= window[front++].tokens;
  }
  window.erase(window.begin(), window.begin() + static_cast<std::ptrdiff_t>(front));
  if (excess > 0) {
    MLA_RETURN_IF_ERROR(TrimFront(counter, window.front().tokens - excess, window.front()));
    if (window.front().text.empty()) window.erase(window.begin());
  }
  return window;
}

// Inserts the needles at the boundaries nearest their depths and joins everything.
BuiltPrompt Assemble(const std::vector<Piece>& window, const NeedleTask& task) {
  std::vector<int> bounds(1, 0);  // bounds[k] = tokens of window pieces before piece k.
  for (const Piece& p : window) bounds.push_back(bounds.back() + p.tokens);
  const int total = bounds.back();
  BuiltPrompt built;
  built.haystack_tokens = total;
  std::vector<std::pair<size_t, size_t>> at;  // (boundary, needle index)
  for (size_t j = 0; j < task.needles.size(); ++j) {
    const double want = task.needles[j].depth * total;
    size_t best = 0;
    for (size_t k = 1; k < bounds.size(); ++k) {
      if (std::abs(bounds[k] - want) < std::abs(bounds[best] - want)) best = k;
    }
    at.emplace_back(best, j);
    built.needle_depths.push_back(total > 0 ? static_cast<double>(bounds[best]) / total
                                            : task.needles[j].depth);
  }
  // Needles sharing a boundary keep the order of their requested depths.
  std::sort(at.begin(), at.end(), [&task](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return task.needles[a.second].depth < task.needles[b.second].depth;
  });
  std::vector<absl::string_view> parts;
  size_t next = 0;
  for (size_t k = 0; k <= window.size(); ++k) {
    for (; next < at.size() && at[next].first == k; ++next) {
      parts.push_back(task.needles[at[next].second].sentence);
    }
    if (k < window.size()) parts.push_back(window[k].text);
  }
  built.text = absl::StrCat(absl::StrJoin(parts, " "), task.question);
  return built;
}

}  // namespace

std::vector<std::string> SplitSentences(absl::string_view text) {
  std::vector<std::string> sentences;
  std::string current;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!current.empty() && current.back() != ' ') current.push_back(' ');
      continue;
    }
    current.push_back(c);
    const bool end = c == '.' || c == '!' || c == '?';
    if (end && (i + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 1])))) {
      sentences.push_back(std::move(current));
      current.clear();
    }
  }
  while (!current.empty() && current.back() == ' ') current.pop_back();
  if (!current.empty()) sentences.push_back(std::move(current));
  return sentences;
}

absl::StatusOr<Corpus> Corpus::FromText(absl::string_view text) {
  std::vector<std::string> sentences = SplitSentences(text);
  if (sentences.empty()) return absl::InvalidArgumentError("the haystack corpus has no sentence");
  return Corpus(std::move(sentences));
}

absl::StatusOr<Corpus> Corpus::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the haystack corpus ", path));
  std::stringstream text;
  text << in.rdbuf();
  return FromText(text.str());
}

absl::StatusOr<BuiltPrompt> BuildPrompt(const Corpus& corpus, const NeedleTask& task,
                                        int target_tokens, TokenCounter& counter) {
  MLA_ASSIGN_OR_RETURN(int fixed, counter.CountPrompt(""));  // Special tokens (BOS).
  MLA_ASSIGN_OR_RETURN(const int question, counter.CountPiece(task.question));
  fixed += question;
  for (const Needle& n : task.needles) {
    MLA_ASSIGN_OR_RETURN(const int tokens, CountJoined(counter, n.sentence));
    fixed += tokens;
  }
  if (fixed > target_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("length ", target_tokens,
                                                   " is too short for the needles and question (",
                                                   fixed, " tokens)"));
  }
  const size_t start = task.haystack_seed % corpus.sentences().size();
  int budget = target_tokens - fixed;
  BuiltPrompt best;
  for (int round = 0; round < kMaxRounds; ++round) {
    MLA_ASSIGN_OR_RETURN(const std::vector<Piece> window, Window(corpus, start, budget, counter));
    BuiltPrompt built = Assemble(window, task);
    MLA_ASSIGN_OR_RETURN(built.tokens, counter.CountPrompt(built.text));
    const int miss = built.tokens - target_tokens;
    if (round == 0 || std::abs(miss) < std::abs(best.tokens - target_tokens)) {
      best = std::move(built);
    }
    if (miss == 0) break;
    budget = std::max(0, budget - miss);
  }
  return best;
}

}  // namespace mla::recall
