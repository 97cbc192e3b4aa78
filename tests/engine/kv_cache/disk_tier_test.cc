// The prefix cache's disk tier (engine/kv_cache/disk_tier.h): round trip through files,
// confirmation by salt, parent and tokens, namespaces per fingerprint, restart, corrupt
// and torn files, the LRU budget and an unusable directory.
#include "engine/kv_cache/disk_tier.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "engine/kv_cache/block_manager.h"

namespace mla {
namespace {

namespace fs = std::filesystem;

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/disk_tier_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
  }

  std::unique_ptr<DiskTier> Open(const std::string& fingerprint = "model-a/fp8",
                                 int64_t budget = 1 << 20) {
    return DiskTier::Open({dir_, budget, fingerprint});
  }

  // Block i: 16 tokens and a 1,000-byte payload, both derived from i.
  static std::vector<int32_t> Tokens(int i) {
    std::vector<int32_t> t(16);
    std::iota(t.begin(), t.end(), 100 * i);
    return t;
  }
  static std::vector<uint8_t> Payload(int i) {
    std::vector<uint8_t> p(1000);
    for (size_t j = 0; j < p.size(); ++j) p[j] = static_cast<uint8_t>(i * 31 + j);
    return p;
  }
  DiskBlockKey Key(int i, const std::vector<int32_t>& tokens, absl::string_view salt = "s") {
    return {static_cast<uint64_t>(i), salt, tokens};
  }

  std::string dir_;
};

TEST_F(DiskTierTest, WrittenBehindThenLoadedAndConfirmed) {
  auto tier = Open();
  const std::vector<int32_t> tokens = Tokens(1);
  tier->Put(Key(7, tokens), Payload(1));
  tier->Flush();
  std::optional<std::vector<uint8_t>> got = tier->Get(Key(7, tokens));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, Payload(1));
  const DiskTierStats s = tier->stats();
  EXPECT_EQ(s.writes, 1);
  EXPECT_EQ(s.blocks, 1);
  EXPECT_EQ(s.bytes, static_cast<int64_t>(fs::file_size(tier->PathOf(
                         ChainedBlockHash(7, "s", tokens)))));
  EXPECT_EQ(s.hit_blocks, 1);
  // Another salt, parent or token list is another block.
  EXPECT_FALSE(tier->Get(Key(7, tokens, "other-tenant")).has_value());
  EXPECT_FALSE(tier->Get(Key(8, tokens)).has_value());
  EXPECT_FALSE(tier->Get(Key(7, Tokens(2))).has_value());
  EXPECT_EQ(tier->stats().corrupt_skipped, 0);
}

TEST_F(DiskTierTest, SurvivesARestartAndKeepsModelsAndDtypesApart) {
  const std::vector<int32_t> tokens = Tokens(3);
  Open()->Put(Key(0, tokens), Payload(3));  // the destructor flushes
  // A leftover temporary file (a crash mid-write) is removed at start.
  auto tier = Open();
  std::ofstream(tier->namespace_dir() + "/00000000000000aa.blk.tmp") << "torn";
  tier = Open();
  EXPECT_FALSE(fs::exists(tier->namespace_dir() + "/00000000000000aa.blk.tmp"));
  EXPECT_EQ(tier->stats().blocks, 1);
  std::optional<std::vector<uint8_t>> got = tier->Get(Key(0, tokens));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, Payload(3));
  EXPECT_FALSE(Open("model-b/fp8")->Get(Key(0, tokens)).has_value());
  EXPECT_FALSE(Open("model-a/bf16")->Get(Key(0, tokens)).has_value());
}

TEST_F(DiskTierTest, CorruptAndTruncatedFilesAreSkippedCountedAndDeleted) {
  auto tier = Open();
  const std::vector<int32_t> a = Tokens(4), b = Tokens(5);
  tier->Put(Key(0, a), Payload(4));
  tier->Put(Key(0, b), Payload(5));
  tier->Flush();
  const std::string path_a = tier->PathOf(ChainedBlockHash(0, "s", a));
  const std::string path_b = tier->PathOf(ChainedBlockHash(0, "s", b));
  {  // one flipped byte in the payload
    std::fstream f(path_a, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-10, std::ios::end);
    const char byte = static_cast<char>(f.get() ^ 0xff);
    f.seekp(-10, std::ios::end);
    f.put(byte);
  }
  fs::resize_file(path_b, fs::file_size(path_b) - 100);  // a torn write
  EXPECT_FALSE(tier->Get(Key(0, a)).has_value());
  EXPECT_FALSE(tier->Get(Key(0, b)).has_value());
  const DiskTierStats s = tier->stats();
  EXPECT_EQ(s.corrupt_skipped, 2);
  EXPECT_EQ(s.blocks, 0);
  EXPECT_EQ(s.bytes, 0);
  EXPECT_FALSE(fs::exists(path_a));
  EXPECT_FALSE(fs::exists(path_b));
  // Written again, it loads again.
  tier->Put(Key(0, a), Payload(4));
  tier->Flush();
  EXPECT_TRUE(tier->Get(Key(0, a)).has_value());
}

TEST_F(DiskTierTest, LeastRecentlyUsedLeavesFirstWithinTheBudget) {
  const int64_t file = 64 + 1 + 16 * 4 + 1000;  // header, salt, tokens, payload
  auto tier = Open("model-a/fp8", 2 * file);
  const std::vector<int32_t> t0 = Tokens(0), t1 = Tokens(1), t2 = Tokens(2);
  tier->Put(Key(0, t0), Payload(0));
  tier->Put(Key(0, t1), Payload(1));
  tier->Flush();
  ASSERT_TRUE(tier->Get(Key(0, t0)).has_value());  // 0 is now more recent than 1
  tier->Put(Key(0, t2), Payload(2));
  tier->Flush();
  const DiskTierStats s = tier->stats();
  EXPECT_EQ(s.blocks, 2);
  EXPECT_EQ(s.bytes, 2 * file);
  EXPECT_EQ(s.evicted, 1);
  EXPECT_TRUE(tier->Get(Key(0, t0)).has_value());
  EXPECT_FALSE(tier->Get(Key(0, t1)).has_value());
  EXPECT_TRUE(tier->Get(Key(0, t2)).has_value());
  // A budget below one block: nothing is written, nothing fails.
  auto tiny = DiskTier::Open({dir_ + "/tiny", 100, "x"});
  tiny->Put(Key(0, t0), Payload(0));
  tiny->Flush();
  EXPECT_EQ(tiny->stats().dropped, 1);
  EXPECT_EQ(tiny->stats().blocks, 0);
  EXPECT_FALSE(tiny->stats().disabled);
}

TEST_F(DiskTierTest, AnUnusableDirectoryDisablesTheTierOnce) {
  fs::create_directories(dir_);
  std::ofstream(dir_ + "/a-file") << "not a directory";
  auto tier = DiskTier::Open({dir_ + "/a-file/tier", 1 << 20, "x"});
  EXPECT_TRUE(tier->stats().disabled);
  const std::vector<int32_t> tokens = Tokens(0);
  tier->Put(Key(0, tokens), Payload(0));
  tier->Flush();
  EXPECT_FALSE(tier->Get(Key(0, tokens)).has_value());
  EXPECT_EQ(tier->stats().dropped, 1);

  // A directory that goes away under a running tier (as a full or read-only disk would
  // fail a write): the first failed write disables it, later blocks are dropped.
  auto running = Open();
  fs::remove_all(running->namespace_dir());
  running->Put(Key(0, tokens), Payload(0));
  running->Flush();
  running->Put(Key(1, tokens), Payload(1));
  running->Flush();
  const DiskTierStats s = running->stats();
  EXPECT_TRUE(s.disabled);
  EXPECT_EQ(s.write_failures, 1);
  EXPECT_EQ(s.dropped, 1);
  EXPECT_FALSE(running->Get(Key(0, tokens)).has_value());
}

}  // namespace
}  // namespace mla
