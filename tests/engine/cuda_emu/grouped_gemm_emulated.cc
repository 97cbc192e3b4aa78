// engine/backend/cuda/kernels/grouped_gemm.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/grouped_gemm.cu"  // NOLINT(build/include)
