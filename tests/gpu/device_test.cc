#include "engine/backend/cuda/device.h"

#include <gtest/gtest.h>

namespace mla {
namespace {

TEST(DeviceTest, CpuIsAlwaysAvailable) {
  auto d = ChooseDevice("cpu");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->cuda);
  EXPECT_EQ(d->description, "cpu");
}

TEST(DeviceTest, RejectsUnknownDevice) {
  auto d = ChooseDevice("tpu");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DeviceTest, AutoFallsBackOrPicksCuda) {
  auto d = ChooseDevice("auto");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE(d->reason.empty());
  if (!d->cuda) {
    EXPECT_EQ(d->description, "cpu");
  }
}

TEST(DeviceTest, CudaOnADevice) {
  auto d = ChooseDevice("cuda");
  if (!d.ok()) {
    // No usable device: the error must say why, then the test skips (not fails).
    EXPECT_EQ(d.status().code(), absl::StatusCode::kFailedPrecondition);
    GTEST_SKIP() << "no CUDA device: " << d.status().message();
  }
  EXPECT_TRUE(d->cuda);
  EXPECT_NE(d->description.find("cuda:"), std::string::npos);
}

}  // namespace
}  // namespace mla
