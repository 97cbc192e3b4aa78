#include "engine/backend/cpu/cpu_features.h"

#include <atomic>

namespace mla::cpu {
namespace {

// -1: no override; otherwise the CpuIsa value.
std::atomic<int> g_override{-1};

CpuIsa Detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kScalar;
}

}  // namespace

std::string_view CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
  }
  return "?";
}

CpuIsa DetectedIsa() {
  static const CpuIsa detected = Detect();
  return detected;
}

bool IsaSupported(CpuIsa isa) { return isa == CpuIsa::kScalar || DetectedIsa() == CpuIsa::kAvx2; }

CpuIsa ActiveIsa() {
  const int forced = g_override.load(std::memory_order_relaxed);
  return forced < 0 ? DetectedIsa() : static_cast<CpuIsa>(forced);
}

ScopedIsaOverride::ScopedIsaOverride(CpuIsa isa) {
  const int previous = g_override.load(std::memory_order_relaxed);
  if (previous >= 0) previous_ = static_cast<CpuIsa>(previous);
  if (IsaSupported(isa)) g_override.store(static_cast<int>(isa), std::memory_order_relaxed);
}

ScopedIsaOverride::~ScopedIsaOverride() {
  g_override.store(previous_.has_value() ? static_cast<int>(*previous_) : -1,
                   std::memory_order_relaxed);
}

}  // namespace mla::cpu
