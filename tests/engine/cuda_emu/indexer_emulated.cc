// engine/backend/cuda/kernels/indexer.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/indexer.cu"  // NOLINT(build/include)
