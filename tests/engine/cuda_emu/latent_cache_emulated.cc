// engine/backend/cuda/kernels/latent_cache.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/latent_cache.cu"  // NOLINT(build/include)
