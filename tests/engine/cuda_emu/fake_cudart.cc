// The CUDA runtime functions that the decode kernels' host code and its test call, on the
// emulator (emu_runtime.h): one emulated device with an H200's multiprocessors, compute
// capability 9.0 and 227 KiB of shared memory per CTA; "device" memory is host memory.
// A binary links this instead of libcudart.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
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

cudaError_t FromStatus(const absl::Status& s) {
  if (s.ok()) return cudaSuccess;
  std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
  return Record(cudaErrorLaunchFailure);
}

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
    case cudaDevAttrL2CacheSize:
      *value = 60 << 20;
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
    emu::AllowSharedBytes(func, value);
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

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t stream) {
  return FromStatus(emu::OnStream(stream, [dst, src, bytes] {
    if (bytes > 0) std::memmove(dst, src, bytes);
    return absl::OkStatus();
  }));
}

// Rows of `width` bytes, `height` of them, at their pitches.
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind, cudaStream_t stream) {
  if (width > dpitch || width > spitch) return Record(cudaErrorInvalidPitchValue);
  return FromStatus(emu::OnStream(stream, [=] {
    for (size_t r = 0; r < height; ++r) {
      std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                   width);
    }
    return absl::OkStatus();
  }));
}

cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind) {
  return cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, height, kind, nullptr);
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  return FromStatus(emu::OnStream(stream, [ptr, value, bytes] {
    std::memset(ptr, value, bytes);
    return absl::OkStatus();
  }));
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = reinterpret_cast<cudaStream_t>(new emu::Stream());
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete reinterpret_cast<emu::Stream*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaGetLastError(); }

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  auto* s = reinterpret_cast<emu::Stream*>(stream);
  if (s == nullptr || s->capture != nullptr) return Record(cudaErrorStreamCaptureUnsupported);
  s->capture = new emu::Graph();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  auto* s = reinterpret_cast<emu::Stream*>(stream);
  if (s == nullptr || s->capture == nullptr) return Record(cudaErrorIllegalState);
  *graph = reinterpret_cast<cudaGraph_t>(s->capture);
  s->capture = nullptr;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  *exec = reinterpret_cast<cudaGraphExec_t>(new emu::Graph(*reinterpret_cast<emu::Graph*>(graph)));
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  const auto* g = reinterpret_cast<const emu::Graph*>(exec);
  return FromStatus(emu::OnStream(stream, [g] {
    for (const auto& work : g->work) {
      if (absl::Status s = work(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }));
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<emu::Graph*>(graph);
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<emu::Graph*>(exec);
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return device == 0 ? cudaSuccess : Record(cudaErrorInvalidDevice);
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  *total = size_t{141} << 30;
  *free = *total - std::min(*total, emu::AllocatedBytes());
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
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    default:
      return "cudaError (emulated)";
  }
}

const char* cudaGetErrorString(cudaError_t error) { return cudaGetErrorName(error); }

cudaError_t cudaDeviceSynchronize(void) { return cudaGetLastError(); }

// Events for the benchmarks' timing: work runs when it is issued here, so an event records
// the host clock.
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = reinterpret_cast<cudaEvent_t>(new std::chrono::steady_clock::time_point());
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  *reinterpret_cast<std::chrono::steady_clock::time_point*>(event) =
      std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaGetLastError(); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  using Clock = std::chrono::steady_clock;
  *ms = std::chrono::duration<float, std::milli>(*reinterpret_cast<Clock::time_point*>(end) -
                                                 *reinterpret_cast<Clock::time_point*>(start))
            .count();
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<std::chrono::steady_clock::time_point*>(event);
  return cudaSuccess;
}

}  // extern "C"
