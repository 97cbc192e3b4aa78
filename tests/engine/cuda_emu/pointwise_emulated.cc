// engine/backend/cuda/kernels/pointwise.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/pointwise.cu"  // NOLINT(build/include)
