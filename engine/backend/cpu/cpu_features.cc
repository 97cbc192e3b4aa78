#include "engine/backend/cpu/cpu_features.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace mla::cpu {
namespace {

// -1: no override; otherwise the CpuIsa value.
std::atomic<int> g_override{-1};

constexpr CpuIsa kAllIsas[] = {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512Bf16};

CpuIsa Detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return CpuIsa::kScalar;
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 registers (XCR0).
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16")) {
    return CpuIsa::kAvx512Bf16;
  }
  return CpuIsa::kAvx2;
#else
  return CpuIsa::kScalar;
#endif
}

// True for the levels whose results match the scalar reference to fp32 rounding.
bool IsExact(CpuIsa isa) { return isa != CpuIsa::kAvx512Bf16; }

CpuIsa ComputeDefault() {
  CpuIsa best_exact = CpuIsa::kScalar;
  for (CpuIsa isa : kAllIsas) {
    if (IsExact(isa) && IsaSupported(isa)) best_exact = isa;
  }
  const char* env = std::getenv("MLA_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_exact;
  const std::optional<CpuIsa> wanted = ParseCpuIsa(env);
  if (!wanted.has_value() || !IsaSupported(*wanted)) {
    std::fprintf(stderr, "MLA_CPU_ISA=%s: %s; using %s\n", env,
                 wanted.has_value() ? "not supported by this CPU" : "unknown instruction set",
                 std::string(CpuIsaName(best_exact)).c_str());
    return best_exact;
  }
  return *wanted;
}

}  // namespace

std::string_view CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512Bf16:
      return "avx512_bf16";
  }
  return "?";
}

std::string_view CpuIsaFeatures(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "none";
    case CpuIsa::kAvx2:
      return "AVX2 + FMA";
    case CpuIsa::kAvx512Bf16:
      return "AVX-512 F/BW/VL + AVX512_BF16";
  }
  return "?";
}

std::optional<CpuIsa> ParseCpuIsa(std::string_view name) {
  for (CpuIsa isa : kAllIsas) {
    if (CpuIsaName(isa) == name) return isa;
  }
  return std::nullopt;
}

CpuIsa DetectedIsa() {
  static const CpuIsa detected = Detect();
  return detected;
}

CpuIsa DefaultIsa() {
  static const CpuIsa isa = ComputeDefault();
  return isa;
}

bool IsaSupported(CpuIsa isa) { return isa <= DetectedIsa(); }

CpuIsa ActiveIsa() {
  const int forced = g_override.load(std::memory_order_relaxed);
  return forced < 0 ? DefaultIsa() : static_cast<CpuIsa>(forced);
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
