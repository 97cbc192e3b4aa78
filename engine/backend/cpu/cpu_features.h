// Run-time choice of the SIMD instruction set the CPU kernels use. The library is built
// for a generic x86-64 (or any other) target; the AVX2 and AVX-512 variants are compiled
// with function target attributes and chosen once, at first use, from what the CPU
// reports.
//
// Levels are ordered: a kernel written for level L runs whenever the active level is >= L
// (the AVX-512 levels have GEMMs of their own; the bf16 ones also run the decompressed
// prefill attention's products and the absorbed attention's multi-head path in bf16;
// everything else keeps its AVX2 kernels there).
//
// kAvx512Bf16 and kAmxBf16 are not exact: their GEMMs round the activations to bf16 so that
// vdpbf16ps or AMX tiles can multiply them with the bf16 weights (2× and up to 16× the
// multiply-adds per cycle of fp32 FMA), and their attention rounds queries and softmax
// weights the same way. Measured on the golden tests' tiny models, that moves logits by
// 1 − cosine of about 1e-5 and up to 4e-3 per row, against a tolerance of 1e-6 that the
// exact levels meet with 10× headroom (docs/BENCHMARKS.md, "CPU GEMM with AVX512_BF16").
// So they are never chosen by themselves: the default is the best exact level, and
// MLA_CPU_ISA=avx512_bf16 or amx_bf16 in the environment (or a ScopedIsaOverride) opts in.
#ifndef MLA_ENGINE_BACKEND_CPU_CPU_FEATURES_H_
#define MLA_ENGINE_BACKEND_CPU_CPU_FEATURES_H_

#include <optional>
#include <string_view>

namespace mla::cpu {

enum class CpuIsa {
  kScalar,  // Portable C++; the reference for what the SIMD variants must compute.
  kAvx2,    // AVX2 + FMA (x86-64 v3).
  // AVX-512 F/BW/VL: the AVX2 kernels plus an fp32 AVX-512 GEMM for prefill (exact; twice
  // the multiply-adds per cycle on cores with two 512-bit FMA units, e.g. Xeons).
  kAvx512,
  // AVX-512 F/BW/VL + AVX512_BF16 (Zen 4, Sapphire Rapids): GEMM and MLA attention on
  // bf16-rounded operands with fp32 accumulation. Opt-in (see above).
  kAvx512Bf16,
  // The above plus AMX-BF16 tiles (Sapphire Rapids and later) for GEMMs of more than 32
  // tokens: the same bf16 numerics, 8,192 multiply-adds per instruction. Opt-in like the
  // level below; needs Linux to grant the tile state (arch_prctl, asked at detection).
  kAmxBf16,
};

std::string_view CpuIsaName(CpuIsa isa);

// The CPU features `isa` needs, for messages ("AVX2 + FMA").
std::string_view CpuIsaFeatures(CpuIsa isa);

// The instruction set named `name` (as CpuIsaName spells it), if any.
std::optional<CpuIsa> ParseCpuIsa(std::string_view name);

// The best instruction set this CPU supports among those compiled in, exact or not.
CpuIsa DetectedIsa();

// What the kernels use unless overridden: the level MLA_CPU_ISA names when the CPU has
// it (read once; an unknown or unsupported name is reported on stderr and ignored),
// otherwise the best exact level the CPU supports (kAvx512 on Intel CPUs only: see
// cpu_features.cc).
CpuIsa DefaultIsa();

// The instruction set the kernels dispatch to: DefaultIsa() unless overridden.
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

// False for the levels that round activations to bf16 (kAvx512Bf16 and above).
bool IsaIsExact(CpuIsa isa);

// True when `isa` can run on this CPU (every level below a supported one is supported).
bool IsaSupported(CpuIsa isa);

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_CPU_FEATURES_H_
