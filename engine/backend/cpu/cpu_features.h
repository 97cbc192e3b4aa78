// Run-time choice of the SIMD instruction set the CPU kernels use. The library is built
// for a generic x86-64 (or any other) target; the AVX2 variants are compiled with function
// target attributes and chosen once, at first use, from what the CPU reports.
#ifndef MLA_ENGINE_BACKEND_CPU_CPU_FEATURES_H_
#define MLA_ENGINE_BACKEND_CPU_CPU_FEATURES_H_

#include <optional>
#include <string_view>

namespace mla::cpu {

enum class CpuIsa {
  kScalar,  // Portable C++; the reference for what the SIMD variants must compute.
  kAvx2,    // AVX2 + FMA (x86-64 v3).
};

std::string_view CpuIsaName(CpuIsa isa);

// The best instruction set this CPU supports among those compiled in.
CpuIsa DetectedIsa();

// The instruction set the kernels dispatch to: DetectedIsa() unless overridden.
CpuIsa ActiveIsa();

// Forces the kernels onto `isa` while alive (tests run every variant this way). Forcing
// an instruction set the CPU lacks is refused: the override then keeps the detected one.
// Not for concurrent use with running kernels.
class ScopedIsaOverride {
 public:
  explicit ScopedIsaOverride(CpuIsa isa);
  ~ScopedIsaOverride();
  ScopedIsaOverride(const ScopedIsaOverride&) = delete;
  ScopedIsaOverride& operator=(const ScopedIsaOverride&) = delete;

 private:
  std::optional<CpuIsa> previous_;
};

// True when `isa` can run on this CPU.
bool IsaSupported(CpuIsa isa);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_CPU_FEATURES_H_
