// engine/backend/cuda/kernels/forward_f32.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/forward_f32.cu"  // NOLINT(build/include)
