// engine/backend/cuda/cuda_check.cu (host code only) compiled as C++ for the emulator.
#include "engine/backend/cuda/cuda_check.cu"  // NOLINT(build/include)
