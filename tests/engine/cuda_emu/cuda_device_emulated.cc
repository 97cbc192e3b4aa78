// engine/backend/cuda/cuda_device.cu (host code only) compiled as C++ for the emulator.
#include "engine/backend/cuda/cuda_device.cu"  // NOLINT(build/include)
