// The engine's side of the prefix cache's disk tier (engine/kv_cache/disk_tier.h): the
// namespace fingerprint, loading a new request's missing prefix blocks into the pool,
// and queueing every newly committed block for writing.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/common/log.h"
#include "engine/engine.h"

namespace mla {
namespace {

// Everything a cached block's bytes depend on besides its tokens: the model's config and
// weight files (name, size and the first MiB, which holds a safetensors file's header of
// names, shapes and offsets and the first tensors) and the cache layout.
std::string ModelFingerprint(const std::string& model_dir, const CacheLayout& layout) {
  std::string print =
      absl::StrCat("layout ", CacheDTypeName(layout.dtype()), " ", layout.latent_dim(), " ",
                   layout.rope_dim(), " ", layout.block_size(), " ", layout.num_layers(), "\n");
  if (layout.index_key_dim() > 0) {  // V3.2: the indexer keys ride in every block.
    absl::StrAppend(&print, "index ", CacheDTypeName(layout.index_dtype()), " ",
                    layout.index_key_dim(), "\n");
  }
  std::vector<std::filesystem::path> files;
  std::error_code error;
  for (const auto& e : std::filesystem::directory_iterator(model_dir, error)) {
    const std::string name = e.path().filename().string();
    if (name == "config.json" || e.path().extension() == ".safetensors" ||
        name == "model.safetensors.index.json") {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  constexpr size_t kHead = size_t{1} << 20;
  std::string head(kHead, '\0');
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    in.read(head.data(), static_cast<std::streamsize>(kHead));
    // The head's hash, not the head: a checkpoint of 163 shards would make a 163 MiB key.
    absl::StrAppend(&print, f.filename().string(), " ",
                    static_cast<uint64_t>(std::filesystem::file_size(f, error)), " ",
                    Fnv1a64(kFnv1aBasis, head.data(), static_cast<size_t>(in.gcount())), "\n");
  }
  return print;
}

}  // namespace

void Engine::OpenDiskTier() {
  if (options_.kv_disk_dir.empty()) return;
  if (!blocks_.prefix_caching_enabled()) {
    LogWarning("KV disk tier: off, it needs prefix caching (--enable_prefix_caching)");
    return;
  }
  // A backend that cannot copy blocks to the host (a GPU backend without the copies yet)
  // gets no tier: a block registered as loaded must really hold the loaded bytes.
  std::vector<uint8_t> probe(static_cast<size_t>(runner_->cache_layout().bytes_per_block()));
  if (absl::Status s = runner_->backend().ReadCacheBlock(0, probe); !s.ok()) {
    LogWarning("KV disk tier: off, the backend cannot copy cache blocks: ", s.message());
    return;
  }
  DiskTierOptions o;
  o.dir = options_.kv_disk_dir;
  o.budget_bytes = options_.kv_disk_bytes;
  o.fingerprint = ModelFingerprint(options_.model_dir, runner_->cache_layout());
  disk_tier_ = DiskTier::Open(o);
}

void Engine::LoadFromDiskTier(const Sequence& seq) {
  if (!disk_tier_ || seq.num_computed > 0) return;
  const absl::Time start = absl::Now();
  const std::string& salt = seq.request.cache_salt;
  const int64_t bs = blocks_.block_size();
  const int64_t bytes_per_block = runner_->cache_layout().bytes_per_block();
  int64_t loaded = 0;
  for (const BlockManager::CommittedBlock& b : blocks_.BlocksAfterCachedPrefix(seq.tokens, salt)) {
    if (!disk_tier_->Contains(b.hash)) break;
    const std::span<const int32_t> chunk(seq.tokens.data() + b.index * bs, bs);
    const std::optional<std::vector<uint8_t>> payload =
        disk_tier_->Get({b.parent_hash, salt, chunk});
    if (!payload || static_cast<int64_t>(payload->size()) != bytes_per_block) break;
    const absl::StatusOr<int32_t> block = blocks_.AddCachedBlock(seq.tokens, salt, b.index);
    if (!block.ok()) break;  // the pool is full of live blocks: compute instead
    if (absl::Status s = runner_->backend().WriteCacheBlock(*block, *payload); !s.ok()) {
      LogError("KV disk tier: loading a block failed: ", s.message());
      break;
    }
    loaded += bs;
  }
  if (loaded == 0) return;
  disk_hit_tokens_.fetch_add(loaded, std::memory_order_relaxed);
  if (options_.observer != nullptr) {
    options_.observer->OnDiskTierLoad(loaded, absl::ToDoubleSeconds(absl::Now() - start));
  }
}

void Engine::SaveToDiskTier(const Sequence& seq,
                            const std::vector<BlockManager::CommittedBlock>& committed) {
  if (!disk_tier_ || committed.empty()) return;
  const int64_t bs = blocks_.block_size();
  std::vector<uint8_t> bytes(static_cast<size_t>(runner_->cache_layout().bytes_per_block()));
  for (const BlockManager::CommittedBlock& b : committed) {
    if (disk_tier_->Contains(b.hash)) continue;
    if (!runner_->backend().ReadCacheBlock(b.block, bytes).ok()) return;
    disk_tier_->Put({b.parent_hash, seq.request.cache_salt,
                     std::span<const int32_t>(seq.tokens.data() + b.index * bs, bs)},
                    bytes);
  }
}

}  // namespace mla
