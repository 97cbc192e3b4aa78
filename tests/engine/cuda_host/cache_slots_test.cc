#include "engine/backend/cuda/host/cache_slots.h"

#include <vector>

#include "gtest/gtest.h"

namespace mla::cuda {
namespace {

TEST(CacheSlotsTest, MapsPositionsThroughTheBlockTable) {
  const std::vector<int32_t> table = {7, 2, 5};
  std::vector<int32_t> slots = {-1};  // Appends after what is there.
  ASSERT_TRUE(AppendCacheSlots(table, 4, 8, 2, 7, &slots).ok());
  EXPECT_EQ(slots, (std::vector<int32_t>{-1, 30, 31, 8, 9, 10, 11, 20}));
}

TEST(CacheSlotsTest, RejectsPositionsPastTheTableAndBadBlockIds) {
  std::vector<int32_t> slots;
  EXPECT_EQ(AppendCacheSlots({1, 2}, 64, 4, 100, 29, &slots).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(AppendCacheSlots({1, 2}, 64, 4, 100, 28, &slots).ok());
  slots.clear();
  EXPECT_EQ(AppendCacheSlots({1, 9}, 64, 4, 60, 8, &slots).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(slots.empty()) << "unchanged on error";
  EXPECT_EQ(AppendCacheSlots({1}, 64, 4, -1, 1, &slots).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(AppendCacheSlots({}, 64, 4, 0, 0, &slots).ok());
}

}  // namespace
}  // namespace mla::cuda
