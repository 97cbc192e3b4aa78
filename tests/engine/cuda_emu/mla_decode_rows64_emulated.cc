// engine/backend/cuda/kernels/mla_decode_rows64.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/mla_decode_rows64.cu"  // NOLINT(build/include)
