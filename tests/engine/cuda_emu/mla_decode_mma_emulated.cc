// engine/backend/cuda/kernels/mla_decode_mma.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/mla_decode_mma.cu"  // NOLINT(build/include)
