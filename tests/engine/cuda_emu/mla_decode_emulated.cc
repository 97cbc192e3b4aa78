// engine/backend/cuda/kernels/mla_decode.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/mla_decode.cu"  // NOLINT(build/include)
