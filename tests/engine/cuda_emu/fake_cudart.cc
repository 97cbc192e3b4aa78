// The CUDA runtime functions that the decode kernels' host code and its test call, on the
// emulator (emu_runtime.h): one emulated device with an H200's multiprocessors, compute
// capability 9.0 and 227 KiB of shared memory per CTA; "device" memory is host memory.
// A binary links this instead of libcudart.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "tests/engine/cuda_emu/emu_runtime.h"

namespace {

namespace emu = ::mla::cuda::emu;

cudaError_t& LastError() {
  static cudaError_t error = cudaSuccess;
  return error;
}

cudaError_t Record(cudaError_t e) {
  if (e != cudaSuccess) LastError() = e;
  return e;
}

std::map<const void*, int>& MaxDynamicShared() {
  static auto* m = new std::map<const void*, int>();
  return *m;
}

void CallKernel(const void* func, void** args) { emu::GetKernelCaller()(func, args); }

constexpr int kMultiprocessors = 132;
constexpr size_t kSharedPerMultiprocessor = 228 * 1024;

}  // namespace

extern "C" {

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = emu::Allocate(bytes);
  return Record(*ptr == nullptr ? cudaErrorMemoryAllocation : cudaSuccess);
}

cudaError_t cudaFree(void* ptr) {
  emu::Free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return Record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "CPU emulation of an sm_90 device");
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = kMultiprocessors;
  prop->totalGlobalMem = size_t{141} << 30;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = emu::kMaxSharedBytesPerBlock;
  prop->sharedMemPerMultiprocessor = kSharedPerMultiprocessor;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->warpSize = 32;
  prop->regsPerBlock = 65536;
  prop->memoryBusWidth = 6144;
  prop->l2CacheSize = 60 << 20;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return Record(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(emu::kMaxSharedBytesPerBlock);
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = kMultiprocessors;
      return cudaSuccess;
    default:
      return Record(cudaErrorInvalidValue);
  }
}

cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, const void*) {
  std::memset(attr, 0, sizeof(*attr));
  attr->maxThreadsPerBlock = 1024;
  attr->ptxVersion = 90;
  attr->binaryVersion = 90;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > emu::kMaxSharedBytesPerBlock) {
      return Record(cudaErrorInvalidValue);
    }
    MaxDynamicShared()[func] = value;
  }
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void*, int threads,
                                                          size_t shared) {
  // Shared memory (1 KiB reserved per CTA) and threads decide it here; registers would on
  // a device.
  const size_t by_shared = kSharedPerMultiprocessor / (shared + 1024);
  const int by_threads = threads > 0 ? 2048 / threads : 0;
  *blocks = std::min(static_cast<int>(by_shared), by_threads);
  return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int* blocks, const void* func,
                                                                   int threads, size_t shared,
                                                                   unsigned int) {
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, func, threads, shared);
}

cudaError_t cudaLaunchKernel(const void* func, dim3 grid, dim3 block, void** args, size_t shared,
                             cudaStream_t) {
  // As the runtime: more than 48 KiB of dynamic shared memory needs the kernel's opt-in.
  if (shared > 48 * 1024) {
    auto it = MaxDynamicShared().find(func);
    if (it == MaxDynamicShared().end() || static_cast<size_t>(it->second) < shared) {
      std::fprintf(stderr, "cuda emulator: %zu bytes of shared memory without the opt-in\n",
                   shared);
      return Record(cudaErrorInvalidValue);
    }
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
    return Record(cudaErrorInvalidConfiguration);
  }
  if (emu::GetKernelCaller() == nullptr) return Record(cudaErrorInvalidDeviceFunction);
  const absl::Status s = emu::RunGrid(CallKernel, func, args, grid, block, shared);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return Record(cudaErrorLaunchFailure);
  }
  return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = LastError();
  LastError() = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return LastError(); }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    default:
      return "cudaError (emulated)";
  }
}

const char* cudaGetErrorString(cudaError_t error) { return cudaGetErrorName(error); }

cudaError_t cudaDeviceSynchronize(void) { return cudaGetLastError(); }

}  // extern "C"
