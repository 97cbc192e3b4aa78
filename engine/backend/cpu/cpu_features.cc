#include "engine/backend/cpu/cpu_features.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace mla::cpu {
namespace {

// -1: no override; otherwise the CpuIsa value.
std::atomic<int> g_override{-1};

constexpr CpuIsa kAllIsas[] = {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512,
                               CpuIsa::kAvx512Bf16, CpuIsa::kAmxBf16};

// AMX-TILE and AMX-BF16 reported by CPUID, and the tile data state granted to this process
// by Linux (arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)): without the grant the first tile
// instruction faults. Asked once; the grant lasts for the process and all its threads.
bool AmxUsable() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__linux__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  constexpr unsigned kAmxBf16Bit = 1u << 22;
  constexpr unsigned kAmxTileBit = 1u << 24;
  if ((edx & kAmxBf16Bit) == 0 || (edx & kAmxTileBit) == 0) return false;
  constexpr long kArchReqXcompPerm = 0x1023;  // <asm/prctl.h>, Linux 5.16
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuIsa Detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return CpuIsa::kScalar;
  // __builtin_cpu_supports also checks that the OS saves the AVX-512 registers (XCR0).
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl")) {
    return CpuIsa::kAvx2;
  }
  if (__builtin_cpu_supports("avx512bf16")) {
    return AmxUsable() ? CpuIsa::kAmxBf16 : CpuIsa::kAvx512Bf16;
  }
  return CpuIsa::kAvx512;
#else
  return CpuIsa::kScalar;
#endif
}

// The exact AVX-512 level doubles the fp32 multiply-adds per cycle only on cores with
// full-width 512-bit FMA units (Intel's Xeons measured 1.4-1.5x the AVX2 GEMM). Zen 4
// runs each 512-bit FMA as two 256-bit halves, so there it cannot beat the AVX2 kernel
// and its larger panel would fill Zen 4's 32 KiB L1: by default it is Intel's only, and
// MLA_CPU_ISA=avx512 opts in elsewhere.
bool DefaultsToAvx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_is("intel");
#else
  return false;
#endif
}

CpuIsa ComputeDefault() {
  CpuIsa best_exact = CpuIsa::kScalar;
  for (CpuIsa isa : kAllIsas) {
    if (isa == CpuIsa::kAvx512 && !DefaultsToAvx512()) continue;
    if (IsaIsExact(isa) && IsaSupported(isa)) best_exact = isa;
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
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Bf16:
      return "avx512_bf16";
    case CpuIsa::kAmxBf16:
      return "amx_bf16";
  }
  return "?";
}

std::string_view CpuIsaFeatures(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "none";
    case CpuIsa::kAvx2:
      return "AVX2 + FMA";
    case CpuIsa::kAvx512:
      return "AVX-512 F/BW/VL";
    case CpuIsa::kAvx512Bf16:
      return "AVX-512 F/BW/VL + AVX512_BF16";
    case CpuIsa::kAmxBf16:
      return "AVX-512 F/BW/VL + AVX512_BF16 + AMX-TILE/AMX-BF16 (granted by the OS)";
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

bool IsaIsExact(CpuIsa isa) { return isa < CpuIsa::kAvx512Bf16; }

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
