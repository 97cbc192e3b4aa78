// A CPU emulator for the CUDA kernels' execution model, so that the backend's kernels
// (their own code, compiled as C++ with prelude.h) run and are checked on machines without
// a GPU.
//
// A launch runs its CTAs one after another, in a shuffled order. Each thread of a CTA is a
// fiber on one OS thread; a fiber runs until it reaches a synchronizing operation (a CTA
// or named barrier, or a warp- or warpgroup-wide instruction: shuffle, ldmatrix, mma,
// wgmma), so the interleaving of warps between such points is decided by the scheduler,
// which resumes a random ready fiber each time. A warp-wide instruction is computed once
// all 32 lanes have arrived, from all their operands, by the last lane to arrive: what the
// hardware's single instruction does.
//
// What it catches that reading the code does not: barriers that do not match (deadlock,
// reported with each thread's wait), lanes of a warp that diverge at a warp-wide
// instruction, shared-memory addresses outside the launch's dynamic shared memory,
// asynchronous copies from outside any allocation, reads of shared memory that was never
// written (the memory starts as NaN bytes), and missing waits: asynchronous copies
// (cp.async) and wgmma products land as late as the PTX allows (at the wait that covers
// them) or, with MLA_EMU_ASYNC=early, at issue, which exposes a buffer reused too soon.
// What it does not model: timing, memory ordering without barriers beyond the schedule's
// interleavings (the race-checking build, MLA_EMU_TSAN in emu_runtime.cc, reports those
// accesses instead), the device compiler, and the hardware's exact summation order in mma
// (sums in fp32 here).
#ifndef MLA_TESTS_ENGINE_CUDA_EMU_EMU_RUNTIME_H_
#define MLA_TESTS_ENGINE_CUDA_EMU_EMU_RUNTIME_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace mla::cuda::emu {

// The bits of `from` as a To of the same size (the __float_as_uint family).
template <typename To, typename From>
To BitCast(From from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

// The calling thread's coordinates (only valid inside a kernel).
const uint3& ThreadIdx();
const uint3& BlockIdx();
const dim3& BlockDim();
const dim3& GridDim();

// Fails the running launch with `message` (a trap); never returns to the kernel.
[[noreturn]] void Fail(const std::string& message);

// Barrier `id` (0: __syncthreads) for `count` threads.
void Barrier(int id, int count);
inline void SyncThreads() {
  const dim3& d = BlockDim();
  Barrier(0, static_cast<int>(d.x * d.y * d.z));
}

// The CTA's dynamic shared memory: its base, an address's offset in it (checked) and the
// pointer at an offset (checked to hold `bytes`).
unsigned char* SharedBase();
uint32_t SharedOffset(const void* p);
unsigned char* SharedAt(uint32_t offset, size_t bytes);

// Whether asynchronous work (cp.async, wgmma) lands at issue (MLA_EMU_ASYNC=early) or as
// late as the program allows (the default).
bool AsyncEarly();

// A collective of a warp (32 lanes) or warpgroup (128 threads): every member passes its
// operands `in`; once all have arrived, the last one calls compute(all_in, all_out) with
// the members' operands and results in rank order, and each member gets its result.
// `kind` names the instruction (with any immediates): members must agree on it.
inline constexpr int kMaxOperandBytes = 96;
using CollectiveFn = void (*)(const void* in, void* out, const void* context);
void CollectiveBytes(int group_size, uint64_t kind, const void* in, size_t in_bytes, void* out,
                     size_t out_bytes, CollectiveFn compute, const void* context);

template <typename In, typename Out>
Out Collective(int group_size, uint64_t kind, const In& in, CollectiveFn compute,
               const void* context = nullptr) {
  static_assert(sizeof(In) <= kMaxOperandBytes && sizeof(Out) <= kMaxOperandBytes);
  Out out{};
  CollectiveBytes(group_size, kind, &in, sizeof(In), &out, sizeof(Out), compute, context);
  return out;
}

// cp.async: a copy of `bytes` (zeros when !valid) into shared memory, this thread's commit
// and wait (at most `pending` of its newest groups left in flight).
void CopyAsync(void* shared_dst, const void* global_src, int bytes, bool valid);
void CommitCopies();
void WaitCopies(int pending);

// Work of this thread's warpgroup that lands at its next WaitAsyncGroup (or at once when
// early): `run(context)` with a copy of `context_bytes` of context.
void DeferToWarpgroupWait(void (*run)(const void* context), const void* context,
                          size_t context_bytes);
void WaitAsyncGroup();

// The runtime side of cudaMalloc / cudaFree: allocations a copy may read from.
void* Allocate(size_t bytes);
void Free(void* p);
bool InsideAllocation(const void* p, size_t bytes);
size_t AllocatedBytes();

// cudaFuncSetAttribute's opt-in: a launch of `func` with more than 48 KiB of dynamic shared
// memory needs it, as on a device.
void AllowSharedBytes(const void* func, int bytes);
absl::Status CheckSharedBytes(const void* func, size_t bytes);

// Runs a kernel, bound to its arguments, over `grid` CTAs of `block` threads with
// `shared_bytes` of dynamic shared memory. Errors: a failed thread (Fail), a deadlock.
absl::Status RunFunction(const std::function<void()>& kernel, dim3 grid, dim3 block,
                         size_t shared_bytes);

// Streams: work on a stream runs at once (the emulated device is synchronous) unless the
// stream is capturing a graph, which records it to run at each launch of the graph. An
// error of recorded work surfaces at the graph's launch.
struct Graph {
  std::vector<std::function<absl::Status()>> work;
};
struct Stream {
  Graph* capture = nullptr;
};
absl::Status OnStream(cudaStream_t stream, std::function<absl::Status()> work);

// The dynamic shared memory limit of the emulated device.
inline constexpr size_t kMaxSharedBytesPerBlock = 227 * 1024;

}  // namespace mla::cuda::emu

#endif  // MLA_TESTS_ENGINE_CUDA_EMU_EMU_RUNTIME_H_
