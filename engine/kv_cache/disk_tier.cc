#include "engine/kv_cache/disk_tier.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/common/log.h"
#include "engine/kv_cache/block_manager.h"

namespace mla {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'M', 'L', 'A', 'K', 'V', 'B', 'L', 'K'};
constexpr uint32_t kVersion = 1;
constexpr char kSuffix[] = ".blk";
constexpr char kTempSuffix[] = ".tmp";

// Fixed-size file header, little-endian as written on x86 and ARM alike.
struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t salt_bytes;
  uint64_t ns;
  uint64_t parent_hash;
  uint64_t block_hash;
  uint64_t num_tokens;
  uint64_t payload_bytes;
  uint64_t checksum;  // FNV-1a 64 over salt, tokens and payload
};
static_assert(sizeof(FileHeader) == 64);

uint64_t Checksum(absl::string_view salt, std::span<const int32_t> tokens,
                  std::span<const uint8_t> payload) {
  uint64_t h = Fnv1a64(kFnv1aBasis, salt.data(), salt.size());
  h = Fnv1a64(h, tokens.data(), tokens.size_bytes());
  return Fnv1a64(h, payload.data(), payload.size());
}

int64_t FileBytes(size_t salt, size_t tokens, size_t payload) {
  return static_cast<int64_t>(sizeof(FileHeader) + salt + tokens * sizeof(int32_t) + payload);
}

std::optional<uint64_t> HashFromName(const fs::path& path) {
  if (path.extension() != kSuffix) return std::nullopt;
  const std::string stem = path.stem().string();
  if (stem.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (const char c : stem) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace

uint64_t Fnv1a64(uint64_t h, const void* bytes, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(bytes);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

std::unique_ptr<DiskTier> DiskTier::Open(const DiskTierOptions& options) {
  const uint64_t ns = Fnv1a64(kFnv1aBasis, options.fingerprint.data(), options.fingerprint.size());
  auto tier = std::unique_ptr<DiskTier>(new DiskTier(options, ns));
  std::error_code error;
  fs::create_directories(tier->ns_dir_, error);
  if (error) {
    absl::MutexLock lock(&tier->mu_);
    tier->Disable(absl::StrCat("cannot create ", tier->ns_dir_, ": ", error.message()));
    return tier;
  }
  tier->RebuildIndex();
  tier->writer_ = std::thread([t = tier.get()] { t->WriterLoop(); });
  return tier;
}

DiskTier::DiskTier(const DiskTierOptions& options, uint64_t ns)
    : options_(options),
      ns_(ns),
      ns_dir_((fs::path(options.dir) / absl::StrFormat("%016x", ns)).string()) {}

DiskTier::~DiskTier() {
  Flush();
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

std::string DiskTier::PathOf(uint64_t block_hash) const {
  return (fs::path(ns_dir_) / absl::StrFormat("%016x%s", block_hash, kSuffix)).string();
}

void DiskTier::RebuildIndex() {
  // Names, sizes and times only: start-up time grows with the number of files, not bytes.
  std::vector<std::pair<fs::file_time_type, std::pair<uint64_t, int64_t>>> found;
  std::error_code error;
  for (const fs::directory_entry& e : fs::directory_iterator(ns_dir_, error)) {
    std::error_code ignored;
    if (e.path().extension() == kTempSuffix) {  // a write that a crash interrupted
      fs::remove(e.path(), ignored);
      continue;
    }
    const std::optional<uint64_t> hash = HashFromName(e.path());
    const uintmax_t size = e.file_size(ignored);
    if (!hash || ignored) continue;
    found.push_back({e.last_write_time(ignored), {*hash, static_cast<int64_t>(size)}});
  }
  std::sort(found.begin(), found.end());
  absl::MutexLock lock(&mu_);
  for (const auto& [time, entry] : found) Touch(entry.first, entry.second);
  EvictToBudget();
  LogInfo("KV disk tier: ", index_.size(), " blocks (", stats_.bytes >> 20, " MiB) in ", ns_dir_);
}

void DiskTier::Touch(uint64_t hash, int64_t bytes) {
  auto it = index_.find(hash);
  if (it != index_.end()) {
    lru_.erase(it->second.lru);
    stats_.bytes -= it->second.bytes;
  } else {
    it = index_.emplace(hash, Entry{}).first;
  }
  it->second.bytes = bytes;
  it->second.lru = lru_.insert(lru_.end(), hash);
  stats_.bytes += bytes;
  stats_.blocks = static_cast<int64_t>(index_.size());
}

void DiskTier::Forget(uint64_t hash) {
  auto it = index_.find(hash);
  if (it == index_.end()) return;
  stats_.bytes -= it->second.bytes;
  lru_.erase(it->second.lru);
  index_.erase(it);
  stats_.blocks = static_cast<int64_t>(index_.size());
}

void DiskTier::EvictToBudget() {
  while (stats_.bytes > options_.budget_bytes && !lru_.empty()) {
    const uint64_t victim = lru_.front();
    std::error_code ignored;
    fs::remove(PathOf(victim), ignored);
    Forget(victim);
    ++stats_.evicted;
  }
}

void DiskTier::Disable(const std::string& why) {
  if (stats_.disabled) return;
  stats_.disabled = true;
  LogWarning("KV disk tier disabled (serving goes on without it): ", why);
}

void DiskTier::Put(const DiskBlockKey& key, std::span<const uint8_t> payload) {
  const uint64_t hash = ChainedBlockHash(key.parent_hash, key.salt, key.tokens);
  absl::MutexLock lock(&mu_);
  if (index_.contains(hash)) {
    Touch(hash, index_.at(hash).bytes);  // still wanted: keep it away from eviction
    return;
  }
  const int64_t bytes = FileBytes(key.salt.size(), key.tokens.size(), payload.size());
  if (stats_.disabled || stop_ || queued_bytes_ + bytes > options_.max_queued_bytes ||
      bytes > options_.budget_bytes) {
    ++stats_.dropped;
    return;
  }
  queue_.push_back(Pending{key.parent_hash, hash, std::string(key.salt),
                           std::vector<int32_t>(key.tokens.begin(), key.tokens.end()),
                           std::vector<uint8_t>(payload.begin(), payload.end())});
  queued_bytes_ += bytes;
}

void DiskTier::Flush() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](DiskTier* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
        return (t->queue_.empty() && !t->writing_) || !t->writer_.joinable();
      },
      this));
}

void DiskTier::WriterLoop() {
  for (;;) {
    Pending p;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](DiskTier* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
            return t->stop_ || !t->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stop_ and nothing left
      p = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
    }
    const bool ok = stats().disabled ? false : WriteFile(p);
    absl::MutexLock lock(&mu_);
    queued_bytes_ -= FileBytes(p.salt.size(), p.tokens.size(), p.payload.size());
    writing_ = false;
    if (ok) {
      ++stats_.writes;
      Touch(p.block_hash, FileBytes(p.salt.size(), p.tokens.size(), p.payload.size()));
      EvictToBudget();
    }
  }
}

bool DiskTier::WriteFile(const Pending& p) {
  FileHeader h{};
  std::memcpy(h.magic, kMagic, sizeof(kMagic));
  h.version = kVersion;
  h.salt_bytes = static_cast<uint32_t>(p.salt.size());
  h.ns = ns_;
  h.parent_hash = p.parent_hash;
  h.block_hash = p.block_hash;
  h.num_tokens = p.tokens.size();
  h.payload_bytes = p.payload.size();
  h.checksum = Checksum(p.salt, p.tokens, p.payload);
  const std::string path = PathOf(p.block_hash);
  const std::string temp = path + kTempSuffix;
  bool ok;
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(&h), sizeof(h));
    out.write(p.salt.data(), static_cast<std::streamsize>(p.salt.size()));
    out.write(reinterpret_cast<const char*>(p.tokens.data()),
              static_cast<std::streamsize>(p.tokens.size() * sizeof(int32_t)));
    out.write(reinterpret_cast<const char*>(p.payload.data()),
              static_cast<std::streamsize>(p.payload.size()));
    out.flush();
    ok = out.good();
  }
  std::error_code error;
  if (ok) fs::rename(temp, path, error);
  if (ok && !error) return true;
  fs::remove(temp, error);
  absl::MutexLock lock(&mu_);
  ++stats_.write_failures;
  Disable(absl::StrCat("cannot write ", path, " (disk full or not writable?)"));
  return false;
}

std::optional<std::vector<uint8_t>> DiskTier::Get(const DiskBlockKey& key) {
  const uint64_t hash = ChainedBlockHash(key.parent_hash, key.salt, key.tokens);
  {
    absl::MutexLock lock(&mu_);
    if (!index_.contains(hash)) return std::nullopt;
  }
  const std::string path = PathOf(hash);
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {  // deleted meanwhile (evicted by the writer, or by hand): a miss
    absl::MutexLock lock(&mu_);
    Forget(hash);
    return std::nullopt;
  }
  FileHeader h{};
  std::string salt;
  std::vector<int32_t> tokens;
  std::vector<uint8_t> payload;
  bool valid = static_cast<bool>(in.read(reinterpret_cast<char*>(&h), sizeof(h))) &&
               std::memcmp(h.magic, kMagic, sizeof(kMagic)) == 0 && h.version == kVersion &&
               h.ns == ns_ && h.block_hash == hash && h.salt_bytes < (1u << 20) &&
               h.num_tokens < (1u << 24) && h.payload_bytes < (uint64_t{1} << 34);
  if (valid) {
    salt.resize(h.salt_bytes);
    tokens.resize(h.num_tokens);
    payload.resize(h.payload_bytes);
    in.read(salt.data(), static_cast<std::streamsize>(salt.size()));
    in.read(reinterpret_cast<char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size() * sizeof(int32_t)));
    in.read(reinterpret_cast<char*>(payload.data()), static_cast<std::streamsize>(payload.size()));
    valid = in.good() && in.peek() == std::ifstream::traits_type::eof() &&
            h.checksum == Checksum(salt, tokens, payload);
  }
  absl::MutexLock lock(&mu_);
  if (!valid) {  // torn, truncated or altered: never load it, and stop finding it
    std::error_code ignored;
    fs::remove(path, ignored);
    Forget(hash);
    ++stats_.corrupt_skipped;
    return std::nullopt;
  }
  // A valid file of another block (a hash collision) is a miss, not damage.
  if (h.parent_hash != key.parent_hash || salt != key.salt ||
      !std::equal(tokens.begin(), tokens.end(), key.tokens.begin(), key.tokens.end())) {
    return std::nullopt;
  }
  ++stats_.hit_blocks;
  if (index_.contains(hash)) Touch(hash, index_.at(hash).bytes);
  return payload;
}

bool DiskTier::Contains(uint64_t block_hash) const {
  absl::MutexLock lock(&mu_);
  return index_.contains(block_hash);
}

DiskTierStats DiskTier::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace mla
