// engine/backend/cuda/kernels/moe_routing.cu compiled as C++ for the emulator (prelude.h
// included first by the build).
#include "engine/backend/cuda/kernels/moe_routing.cu"  // NOLINT(build/include)
