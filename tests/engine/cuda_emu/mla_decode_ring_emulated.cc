// engine/backend/cuda/kernels/mla_decode_ring.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/mla_decode_ring.cu"  // NOLINT(build/include)
