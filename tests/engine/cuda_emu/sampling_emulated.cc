// engine/backend/cuda/kernels/sampling.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/sampling.cu"  // NOLINT(build/include)
