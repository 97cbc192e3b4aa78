// A fixed set of worker threads for data-parallel loops in the CPU kernels.
//
// ParallelFor splits [0, n) into contiguous chunks, one per thread, and the calling thread
// runs the first chunk itself. A call publishes a pointer to the caller's function (no
// allocation, no queue) and returns when every chunk has finished, so the function may
// capture locals by reference.
//
// Threading contract: one ParallelFor at a time. The pool is meant to be driven by one
// thread (the engine loop). A call made while another is in flight (from another thread,
// or nested inside a chunk) does not wait or deadlock: it runs its whole range serially
// on the calling thread.
#ifndef MLA_ENGINE_BACKEND_CPU_THREAD_POOL_H_
#define MLA_ENGINE_BACKEND_CPU_THREAD_POOL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <type_traits>
#include <vector>

namespace mla::cpu {

class ThreadPool {
 public:
  using RangeFn = std::function<void(int64_t begin, int64_t end)>;

  // `num_threads` counts the caller: 1 means no worker threads. 0 (the default) means
  // std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that run chunks, the caller included.
  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over min(n, num_threads()) contiguous chunks that cover [0, n)
  // (chunk k is [n·k/c, n·(k+1)/c)). Nothing is called when n <= 0.
  void ParallelFor(int64_t n, const RangeFn& fn) { Run(n, RangeRef(fn)); }

  // The same for any callable (a lambda), without wrapping it in a std::function, which
  // would allocate for captures larger than two pointers.
  template <typename Fn>
  requires(std::is_invocable_v<Fn&, int64_t, int64_t> &&
           !std::is_same_v<std::remove_cvref_t<Fn>, RangeFn>) void ParallelFor(int64_t n, Fn&& fn) {
    Run(n, RangeRef(fn));
  }

  // The chunk a thread gets; exposed for callers that size per-chunk scratch.
  static void ChunkBounds(int64_t n, int64_t chunks, int64_t k, int64_t* begin, int64_t* end) {
    *begin = n * k / chunks;
    *end = n * (k + 1) / chunks;
  }

 private:
  // A non-owning reference to a callable; the caller keeps the callable alive.
  class RangeRef {
   public:
    template <typename F>
    explicit RangeRef(F& fn)
        : object_(const_cast<void*>(static_cast<const void*>(&fn))),
          call_([](void* object, int64_t begin, int64_t end) {
            (*static_cast<F*>(object))(begin, end);
          }) {}
    void operator()(int64_t begin, int64_t end) const { call_(object_, begin, end); }

   private:
    void* object_;
    void (*call_)(void*, int64_t, int64_t);
  };

  void Run(int64_t n, RangeRef fn);
  void WorkerLoop(int worker_index);
  void RunChunk(int64_t chunk);

  std::vector<std::thread> workers_;
  // Bumped once per job (and once at shutdown); workers wait on it.
  std::atomic<uint32_t> generation_{0};
  // Workers that have not finished the current job; the caller waits on it.
  std::atomic<int32_t> pending_{0};
  // Set while a ParallelFor is in flight, so that overlapping calls run serially.
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  // The current job, written before generation_ is bumped (release) and read after it is
  // observed (acquire).
  const RangeRef* job_fn_ = nullptr;
  int64_t job_n_ = 0;
  int64_t job_chunks_ = 0;
};

}  // namespace mla::cpu

#endif  // MLA_ENGINE_BACKEND_CPU_THREAD_POOL_H_
