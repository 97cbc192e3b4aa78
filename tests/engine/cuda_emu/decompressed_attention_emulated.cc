// engine/backend/cuda/kernels/decompressed_attention.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/decompressed_attention.cu"  // NOLINT(build/include)
