#include "engine/backend/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace mla::cpu {
namespace {

// Runs ParallelFor and records every chunk it hands out.
std::vector<std::pair<int64_t, int64_t>> Chunks(ThreadPool& pool, int64_t n) {
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> chunks;
  pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
    std::lock_guard<std::mutex> lock(mu);
    chunks.emplace_back(begin, end);
  });
  std::sort(chunks.begin(), chunks.end());
  return chunks;
}

TEST(ThreadPoolTest, DefaultSizeIsHardwareConcurrency) {
  ThreadPool pool;
  EXPECT_EQ(pool.num_threads(), std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
}

TEST(ThreadPoolTest, ChunksAreContiguousAndCoverTheRangeOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.num_threads(), threads);
    for (int64_t n : {1, 2, 3, 4, 7, 1000, 1001}) {
      const auto chunks = Chunks(pool, n);
      ASSERT_EQ(static_cast<int64_t>(chunks.size()), std::min<int64_t>(n, threads))
          << "threads " << threads << " n " << n;
      int64_t next = 0;
      for (const auto& [begin, end] : chunks) {
        EXPECT_EQ(begin, next);
        EXPECT_LT(begin, end);
        // Balanced: sizes differ by at most one.
        EXPECT_LE(end - begin, n / static_cast<int64_t>(chunks.size()) + 1);
        next = end;
      }
      EXPECT_EQ(next, n);
    }
  }
}

TEST(ThreadPoolTest, EmptyAndNegativeRangesCallNothing) {
  ThreadPool pool(2);
  int calls = 0;
  pool.ParallelFor(0, [&](int64_t, int64_t) { ++calls; });
  pool.ParallelFor(-5, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(ThreadPoolTest, CallerRunsTheFirstChunkAndWorkersTheRest) {
  ThreadPool pool(3);
  std::vector<std::thread::id> ids(3);
  pool.ParallelFor(3, [&](int64_t begin, int64_t end) { ids[begin] = std::this_thread::get_id(); });
  EXPECT_EQ(ids[0], std::this_thread::get_id());
  EXPECT_NE(ids[1], std::this_thread::get_id());
  EXPECT_NE(ids[2], std::this_thread::get_id());
  EXPECT_NE(ids[1], ids[2]);
}

TEST(ThreadPoolTest, ManyCallsInARowSeeEveryIndexOnce) {
  // Back-to-back jobs of different sizes: a worker must never run a stale job.
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(64);
  for (int round = 0; round < 5000; ++round) {
    const int64_t n = 1 + round % 64;
    pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1, std::memory_order_relaxed);
    });
  }
  for (int64_t i = 0; i < 64; ++i) {
    int expected = 0;
    for (int round = 0; round < 5000; ++round) expected += (i < 1 + round % 64) ? 1 : 0;
    EXPECT_EQ(hits[i].load(), expected) << i;
  }
}

TEST(ThreadPoolTest, NestedCallRunsSeriallyInsteadOfDeadlocking) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.ParallelFor(2, [&](int64_t begin, int64_t end) {
    pool.ParallelFor(10, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  });
  EXPECT_EQ(total.load(), 20);
}

TEST(ThreadPoolTest, OverlappingCallersBothComplete) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  auto work = [&] {
    for (int i = 0; i < 500; ++i) {
      pool.ParallelFor(8, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    }
  };
  std::thread other(work);
  work();
  other.join();
  EXPECT_EQ(total.load(), 2 * 500 * 8);
}

}  // namespace
}  // namespace mla::cpu
