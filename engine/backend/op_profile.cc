#include "engine/backend/op_profile.h"

#include <cstring>
#include <utility>

namespace mla {

OpProfiler::Scope::Scope(OpProfiler* profiler, Op op)
    : profiler_(profiler->enabled() ? profiler : nullptr), name_(op.name) {
  if (profiler_ != nullptr) start_ = std::chrono::steady_clock::now();
}

OpProfiler::Scope::~Scope() {
  if (profiler_ == nullptr) return;
  const std::chrono::duration<double> d = std::chrono::steady_clock::now() - start_;
  profiler_->Add(name_, d.count());
}

void OpProfiler::Add(const char* name, double seconds) {
  // A few dozen names: a linear scan by pointer, then by content (the same literal may
  // have two addresses across translation units).
  for (size_t i = 0; i < names_.size(); ++i) {
    if (names_[i] == name || std::strcmp(names_[i], name) == 0) {
      ++timings_[i].calls;
      timings_[i].seconds += seconds;
      return;
    }
  }
  names_.push_back(name);
  timings_.push_back({name, 1, seconds});
}

std::vector<OpTiming> OpProfiler::Take() {
  names_.clear();
  return std::exchange(timings_, {});
}

}  // namespace mla
