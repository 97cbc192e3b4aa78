// The disk tier of the prefix cache: full blocks of cached prefixes kept as files, so that
// a prefix evicted from the pool, or cached before a restart, is loaded instead of
// recomputed (DeepSeek's API caches context on disk for this reason; MLA's latent cache,
// 656-1,152 bytes per token and layer, makes it cheap).
//
// Identity. A block is found by the prefix cache's chained hash (ChainedBlockHash: the
// parent's hash, the cache_salt and the block's tokens) inside a namespace: a directory
// named after a hash of the caller's fingerprint (the model's config and weight files, the
// cache layout and dtype), so that another model or dtype never reads another's blocks. A
// hit is confirmed like a pool hit: the file's parent hash, salt and tokens must equal
// the caller's, or it is not the block asked for.
//
// Files. `<dir>/<namespace>/<hash>.blk`: a fixed header (magic, version, namespace,
// parent and block hash, sizes, an FNV-1a 64 checksum of everything after it), then the
// salt, the token ids and the payload (the block's cache bytes, every layer). Written to
// a temporary name and renamed, so a crash leaves a whole file or a temporary one (removed
// at start); a torn, truncated or altered file fails the checksum or the sizes, is
// deleted, counted, and never loaded.
//
// Write-behind. Put() copies the block and returns; one writer thread writes in the
// background, so the engine loop never waits for the disk. Flush() waits for the queue
// (graceful shutdown, tests). Get() reads synchronously (a few hundred KiB per block).
//
// Budget. The files' bytes stay within budget_bytes: the least recently used (written or
// loaded) are deleted first. At start the index is rebuilt from the directory listing and
// file sizes alone (no file is read), ordered by modification time: bounded by the number
// of files, not their bytes.
//
// Failures. A directory that cannot be created or a write that fails (disk full,
// read-only) disables the tier with one warning; lookups then miss and serving goes on.
//
// Thread-safe: Put and Get may be called from any thread.
#ifndef MLA_ENGINE_KV_CACHE_DISK_TIER_H_
#define MLA_ENGINE_KV_CACHE_DISK_TIER_H_

#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace mla {

struct DiskTierOptions {
  std::string dir;           // Created when missing.
  int64_t budget_bytes = 0;  // Files' bytes, all namespaces of this process's one.
  // Opaque: everything that must match for a block to be reused (model, layout, dtype).
  std::string fingerprint;
  // Bytes Put() may hold queued for the writer; beyond it blocks are dropped (counted).
  int64_t max_queued_bytes = int64_t{256} << 20;
};

struct DiskTierStats {
  int64_t blocks = 0;            // Files in the index.
  int64_t bytes = 0;             // Their bytes.
  int64_t hit_blocks = 0;        // Get() calls that returned a block.
  int64_t writes = 0;            // Files written.
  int64_t write_failures = 0;    // Writes that failed (the first disables the tier).
  int64_t corrupt_skipped = 0;   // Files found torn, truncated or altered (deleted).
  int64_t dropped = 0;           // Put() calls refused: queue full or tier disabled.
  int64_t evicted = 0;           // Files deleted to stay within the budget.
  bool disabled = false;
};

// What a Get() needs to confirm that a file is the block asked for.
struct DiskBlockKey {
  uint64_t parent_hash = 0;
  absl::string_view salt;
  std::span<const int32_t> tokens;
};

// 64-bit FNV-1a of `bytes` continuing from `h` (start from kFnv1aBasis): the checksum of
// the tier's files, also what fingerprints are folded with.
inline constexpr uint64_t kFnv1aBasis = 0xcbf29ce484222325ULL;
uint64_t Fnv1a64(uint64_t h, const void* bytes, size_t n);

class DiskTier {
 public:
  // Opens (creating when needed) options.dir and rebuilds the index. Never fails for the
  // directory's sake: an unusable directory gives a disabled tier (see the top).
  static std::unique_ptr<DiskTier> Open(const DiskTierOptions& options);
  ~DiskTier();  // Flushes the queue, then stops the writer.

  DiskTier(const DiskTier&) = delete;
  DiskTier& operator=(const DiskTier&) = delete;

  // Queues the block for writing (a no-op when the file exists or the tier is disabled).
  void Put(const DiskBlockKey& key, std::span<const uint8_t> payload);
  // The payload of the block, when a valid file holds exactly it; nullopt otherwise.
  std::optional<std::vector<uint8_t>> Get(const DiskBlockKey& key);
  // True when the index lists the block (cheap; Get() may still find it corrupt).
  bool Contains(uint64_t block_hash) const;
  // Waits until every queued block is written (or dropped).
  void Flush();

  DiskTierStats stats() const;
  // The namespace directory (tests corrupt files there).
  const std::string& namespace_dir() const { return ns_dir_; }
  std::string PathOf(uint64_t block_hash) const;

 private:
  struct Pending {
    uint64_t parent_hash = 0, block_hash = 0;
    std::string salt;
    std::vector<int32_t> tokens;
    std::vector<uint8_t> payload;
  };
  struct Entry {
    int64_t bytes = 0;
    std::list<uint64_t>::iterator lru;  // Position in lru_ (front = least recent).
  };

  DiskTier(const DiskTierOptions& options, uint64_t ns);
  void RebuildIndex();
  void WriterLoop();
  bool WriteFile(const Pending& p);  // false: the tier is now disabled
  void Disable(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Touch(uint64_t hash, int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Forget(uint64_t hash) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictToBudget() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DiskTierOptions options_;
  const uint64_t ns_;
  const std::string ns_dir_;

  mutable absl::Mutex mu_;
  std::unordered_map<uint64_t, Entry> index_ ABSL_GUARDED_BY(mu_);
  std::list<uint64_t> lru_ ABSL_GUARDED_BY(mu_);
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // The writer holds a block out of the queue.
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  DiskTierStats stats_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;
};

}  // namespace mla

#endif  // MLA_ENGINE_KV_CACHE_DISK_TIER_H_
