#include "engine/backend/cpu/thread_pool.h"

#include <algorithm>

namespace mla::cpu {
namespace {

// How long a thread polls before it sleeps in a futex wait. Decode issues many short
// ParallelFor calls back to back; polling briefly saves the wake-up latency (tens of
// microseconds) on each without burning a core when the engine is idle. Past the first
// kPauseIterations the poll yields, so that on an oversubscribed machine the thread we
// wait for gets the core.
constexpr int kPauseIterations = 256;
constexpr int kSpinIterations = 2048;

inline void Relax(int spin) {
  if (spin < kPauseIterations) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
    return;
#endif
  }
  std::this_thread::yield();
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  if (num_threads <= 0) {
    num_threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  }
  workers_.reserve(num_threads - 1);
  for (int i = 0; i < num_threads - 1; ++i) {
    workers_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunChunk(int64_t chunk) {
  int64_t begin = 0;
  int64_t end = 0;
  ChunkBounds(job_n_, job_chunks_, chunk, &begin, &end);
  if (begin < end) (*job_fn_)(begin, end);
}

void ThreadPool::Run(int64_t n, RangeRef fn) {
  if (n <= 0) return;
  const int64_t chunks = std::min<int64_t>(n, num_threads());
  if (chunks == 1 || busy_.exchange(true, std::memory_order_acquire)) {
    fn(0, n);
    return;
  }
  job_fn_ = &fn;
  job_n_ = n;
  job_chunks_ = chunks;
  // Every worker acknowledges every job, also those with fewer chunks than workers, so
  // that a slow worker can never see a later job's fields with an earlier generation.
  pending_.store(static_cast<int32_t>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();

  RunChunk(0);

  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIterations) {
      Relax(spin);
      continue;
    }
    const int32_t left = pending_.load(std::memory_order_acquire);
    if (left != 0) pending_.wait(left, std::memory_order_acquire);
  }
  job_fn_ = nullptr;
  busy_.store(false, std::memory_order_release);
}

void ThreadPool::WorkerLoop(int worker_index) {
  uint32_t seen = 0;
  while (true) {
    uint32_t current = generation_.load(std::memory_order_acquire);
    for (int spin = 0; current == seen && spin < kSpinIterations; ++spin) {
      Relax(spin);
      current = generation_.load(std::memory_order_acquire);
    }
    while (current == seen) {
      generation_.wait(seen, std::memory_order_acquire);
      current = generation_.load(std::memory_order_acquire);
    }
    seen = current;
    if (stop_.load(std::memory_order_relaxed)) return;
    const int64_t chunk = worker_index + 1;
    if (chunk < job_chunks_) RunChunk(chunk);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace mla::cpu
