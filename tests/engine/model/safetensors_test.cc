#include "engine/model/safetensors.h"

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/common/bf16.h"
#include "engine/model/checkpoint.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/model/safetensors_writer.h"

namespace mla {
namespace {

using ::mla::testing::FromBytes;
using ::mla::testing::LengthPrefix;
using ::mla::testing::RefF16;
using ::mla::testing::RefFp8E4M3;
using ::mla::testing::TempDir;
using ::mla::testing::TensorMap;
using ::mla::testing::ToBytes;
using ::mla::testing::WriteFile;
using ::mla::testing::WriteRawSafetensors;
using ::mla::testing::WriteSafetensors;
using ::testing::AllOf;
using ::testing::HasSubstr;

TensorMap TwoTensors() {
  TensorMap t;
  t["a"] = {"F32", {2, 3}, ToBytes(std::vector<float>{1, 2, 3, 4, 5, 6})};
  t["b"] = {"BF16", {3}, ToBytes(std::vector<uint16_t>{0x3f80, 0xc000, 0x0000})};
  return t;
}

TEST(SafetensorsFileTest, OpensAndReadsTensors) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  WriteSafetensors(path, TwoTensors());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  ASSERT_EQ((*file)->tensors().size(), 2u);
  auto a = (*file)->Tensor("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->dtype(), DType::kF32);
  EXPECT_EQ(a->shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->NumElements(), 6);
  EXPECT_EQ(*a->file, path);
  std::vector<float> values(6);
  ASSERT_TRUE(ConvertToFloat(a->dtype(), a->data, 6, values.data()));
  EXPECT_EQ(values, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  auto b = (*file)->Tensor("b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->info->offset, 24u);
  ASSERT_TRUE(ConvertToFloat(b->dtype(), b->data, 3, values.data()));
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], -2.0f);
  (*file)->ReleasePages(*a);  // Dropped pages come back from the file on the next read.
  ASSERT_TRUE(ConvertToFloat(a->dtype(), a->data, 6, values.data()));
  EXPECT_EQ(values[5], 6.0f);
}

TEST(SafetensorsFileTest, EmptyHeaderAndZeroSizedTensors) {
  TempDir dir;
  WriteRawSafetensors(dir.File("e.safetensors"), "{}", "");
  auto empty = SafetensorsFile::Open(dir.File("e.safetensors"));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE((*empty)->tensors().empty());
  WriteRawSafetensors(dir.File("z.safetensors"),
                      R"({"z1":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},)"
                      R"("z2":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}})",
                      "");
  auto zero = SafetensorsFile::Open(dir.File("z.safetensors"));
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_EQ((*zero)->Tensor("z1")->NumElements(), 0);
}

TEST(SafetensorsFileTest, MissingFileAndDirectory) {
  TempDir dir;
  auto missing = SafetensorsFile::Open(dir.File("none.safetensors"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("none.safetensors"));
  auto directory = SafetensorsFile::Open(dir.path());
  EXPECT_EQ(directory.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(directory.status().message(), HasSubstr("not a regular file"));
}

TEST(SafetensorsFileTest, MissingTensorNamesFileAndTensor) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  WriteSafetensors(path, TwoTensors());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  auto t = (*file)->Tensor("nope");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), AllOf(HasSubstr(path), HasSubstr("'nope'")));
}

TEST(SafetensorsFileTest, KnownButUnsupportedDtypeFailsOnRead) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  TensorMap t = TwoTensors();
  t["mask"] = {"F64", {2}, std::string(16, '\0')};
  WriteSafetensors(path, t);
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();  // Other tensors stay readable.
  EXPECT_TRUE((*file)->Tensor("a").ok());
  auto mask = (*file)->Tensor("mask");
  EXPECT_EQ(mask.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mask.status().message(),
              AllOf(HasSubstr(path), HasSubstr("'mask'"), HasSubstr("unsupported dtype 'F64'")));
}

// A broken file: its bytes, and what the error must say besides the file name.
struct MalformedCase {
  std::string label;
  std::string bytes;
  std::vector<std::string> expected;  // Substrings of the message (tensor name, cause).
};

std::string Raw(const std::string& header, const std::string& data = std::string(64, '\0')) {
  return LengthPrefix(header.size()) + header + data;
}

std::string Entry(const std::string& name, const std::string& body) {
  return "{\"" + name + "\":" + body + "}";
}

std::vector<MalformedCase> MalformedCases() {
  const std::string ok_w = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  // clang-format off: one case per entry reads better than one field per line.
  return {
      {"empty_file", "", {"truncated"}},
      {"short_file", "abcde", {"truncated"}},
      {"header_beyond_file", LengthPrefix(1000) + "{}", {"truncated", "1000"}},
      {"header_over_limit", LengthPrefix(200ull << 20) + "{}", {"exceeds the limit"}},
      {"bad_json", Raw("{\"w\": {"), {"not valid JSON"}},
      // A length prefix covering the JSON and the tensor bytes after it.
      {"header_length_is_rest_of_file", LengthPrefix(2 + 64) + "{}" + std::string(64, '\x7f'),
       {"header length 66 runs past the end of the JSON header", "leaving no tensor data"}},
      {"header_length_past_json", LengthPrefix(2 + 32) + "{}" + std::string(64, '\x7f'),
       {"header length 34 runs past the end of the JSON header"}},
      // A length prefix equal to the whole file's size.
      {"header_length_is_file_size", LengthPrefix(8 + 2 + 64) + "{}" + std::string(64, '\0'),
       {"truncated", "header length 74 runs past the end of the file (74 bytes"}},
      {"header_not_object", Raw("[1, 2]"), {"not a JSON object"}},
      {"entry_not_object", Raw(Entry("w", "3")), {"'w'", "not an object"}},
      {"missing_offsets",
       Raw(Entry("w", R"({"dtype":"F32","shape":[2]})")),
       {"'w'", "data_offsets"}},
      {"missing_dtype", Raw(Entry("w", R"({"shape":[2],"data_offsets":[0,8]})")), {"'w'", "dtype"}},
      {"dtype_not_string",
       Raw(Entry("w", R"({"dtype":1,"shape":[2],"data_offsets":[0,8]})")),
       {"'w'", "'dtype' is not a string"}},
      {"shape_not_list",
       Raw(Entry("w", R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})")),
       {"'w'", "'shape'"}},
      {"negative_dim",
       Raw(Entry("w", R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})")),
       {"'w'", "non-negative"}},
      {"float_dim",
       Raw(Entry("w", R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})")),
       {"'w'", "non-negative integers"}},
      {"huge_shape",
       Raw(Entry("w", R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})")),
       {"'w'", "too large"}},
      {"offsets_one_value",
       Raw(Entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[8]})")),
       {"'w'", "two non-negative integers"}},
      {"offsets_strings",
       Raw(Entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":["0","8"]})")),
       {"'w'", "data_offsets"}},
      {"end_beyond_data",
       Raw(Entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[60,68]})")),
       {"'w'", "beyond the data section", "64 bytes"}},
      {"begin_after_end",
       Raw(Entry("w", R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})")),
       {"'w'", "begin 8 > end 0"}},
      {"length_mismatch",
       Raw(Entry("w", R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})")),
       {"'w'", "holds 8 bytes", "needs 12"}},
      {"overlap",
       Raw("{" + ok_w + R"(,"v":{"dtype":"BF16","shape":[2],"data_offsets":[6,10]}})"),
       {"'v'", "overlap", "'w'"}},
      {"unknown_dtype",
       Raw(Entry("w", R"({"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]})")),
       {"'w'", "unsupported dtype 'Q4_K'"}},
      {"metadata_not_object", Raw("{\"__metadata__\": 3, " + ok_w + "}"), {"__metadata__"}},
      {"metadata_not_strings",
       Raw("{\"__metadata__\": {\"k\": 1}, " + ok_w + "}"),
       {"__metadata__", "'k'"}},
  };
  // clang-format on
}

class MalformedFileTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedFileTest, FailsWithInvalidArgumentNamingFileAndTensor) {
  TempDir dir;
  const std::string path = dir.File("bad.safetensors");
  WriteFile(path, GetParam().bytes);
  auto file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  EXPECT_THAT(file.status().message(), HasSubstr(path));
  for (const std::string& s : GetParam().expected) {
    EXPECT_THAT(file.status().message(), HasSubstr(s));
  }
}

INSTANTIATE_TEST_SUITE_P(All, MalformedFileTest, ::testing::ValuesIn(MalformedCases()),
                         [](const auto& info) { return info.param.label; });

TEST(DTypeTest, Fp8E4M3KnownValues) {
  const struct {
    uint8_t bits;
    float value;
  } kTable[] = {
      {0x00, 0.0f},
      {0x38, 1.0f},
      {0xb8, -1.0f},
      {0x40, 2.0f},
      {0x3c, 1.5f},
      {0x30, 0.5f},
      {0x7e, 448.0f},
      {0xfe, -448.0f},
      {0x77, 240.0f},
      {0x08, 0.015625f},
      {0x01, 0.001953125f},
      {0x81, -0.001953125f},
      {0x07, 7 * 0.001953125f},
      {0x87, -7 * 0.001953125f},
      {0x0f, 0.029296875f},
  };
  for (const auto& e : kTable) {
    EXPECT_EQ(Fp8E4M3ToFloat(e.bits), e.value) << "bits 0x" << std::hex << int{e.bits};
  }
  EXPECT_TRUE(std::signbit(Fp8E4M3ToFloat(0x80)));
  EXPECT_EQ(Fp8E4M3ToFloat(0x80), 0.0f);
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0x7f)));
  EXPECT_TRUE(std::isnan(Fp8E4M3ToFloat(0xff)));
  for (int v = 0; v < 256; ++v) {  // All codes against a decoder written from the spec.
    const float want = RefFp8E4M3(static_cast<uint8_t>(v));
    const float got = Fp8E4M3ToFloat(static_cast<uint8_t>(v));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << v;
    } else {
      EXPECT_EQ(got, want) << v;
    }
  }
}

TEST(DTypeTest, F16AllCodes) {
  EXPECT_EQ(F16ToFloat(0x3c00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x7bff), 65504.0f);
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToFloat(0x7c00), INFINITY);
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
  for (uint32_t v = 0; v < 65536; ++v) {
    const float want = RefF16(static_cast<uint16_t>(v));
    const float got = F16ToFloat(static_cast<uint16_t>(v));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << v;
    } else {
      ASSERT_EQ(got, want) << v;
      ASSERT_EQ(std::signbit(got), std::signbit(want)) << v;
    }
  }
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0xc000), -2.0f);
  EXPECT_EQ(Bf16ToFloat(0x0001), std::ldexp(1.0f, -133));           // Subnormal.
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // Tie: down to even.
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // Tie: up to even.
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 0x3f81);
  EXPECT_EQ(FloatToBf16(-448.0f), 0xc3e0);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::nanf("")))));
}

TEST(DTypeTest, ConvertToFloatReadsUnalignedData) {
  const std::vector<float> f32 = {1.5f, -2.25f, 3e-8f};
  const std::vector<uint16_t> bf16 = {0x3f80, 0xbfc0, 0x0001};
  const std::vector<uint16_t> f16 = {0x3c00, 0x8001, 0x7bff};
  const std::vector<uint8_t> fp8 = {0x38, 0x81, 0xfe};
  auto check = [](DType dtype, const std::string& bytes, const std::vector<float>& want) {
    const std::string shifted = "x" + bytes;  // Off by one byte from any alignment.
    std::vector<float> got(want.size());
    ASSERT_TRUE(ConvertToFloat(dtype, reinterpret_cast<const std::byte*>(shifted.data() + 1),
                               want.size(), got.data()));
    EXPECT_EQ(got, want);
  };
  check(DType::kF32, ToBytes(f32), f32);
  check(DType::kBF16, ToBytes(bf16), {1.0f, -1.5f, std::ldexp(1.0f, -133)});
  check(DType::kF16, ToBytes(f16), {1.0f, -std::ldexp(1.0f, -24), 65504.0f});
  check(DType::kF8E4M3, ToBytes(fp8), {1.0f, -std::ldexp(1.0f, -9), -448.0f});
  float out;
  EXPECT_FALSE(ConvertToFloat(DType::kI32, nullptr, 0, &out));
}

// --- Checkpoint directories ---

TEST(CheckpointTest, SingleFile) {
  TempDir dir;
  WriteSafetensors(dir.File("model.safetensors"), TwoTensors());
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->TensorNames(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*ckpt)->FileOf("a"), dir.File("model.safetensors"));
  EXPECT_TRUE((*ckpt)->Tensor("b").ok());
  auto missing = (*ckpt)->Tensor("c");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              AllOf(HasSubstr(dir.File("model.safetensors")), HasSubstr("'c'")));
}

void WriteTwoShards(const TempDir& dir, const std::string& index) {
  TensorMap first, second;
  first["a"] = TwoTensors()["a"];
  second["b"] = TwoTensors()["b"];
  WriteSafetensors(dir.File("model-00001-of-00002.safetensors"), first);
  WriteSafetensors(dir.File("model-00002-of-00002.safetensors"), second);
  WriteFile(dir.File("model.safetensors.index.json"), index);
}

const char kIndex[] = R"({"metadata": {"total_size": 30}, "weight_map": {
    "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})";

TEST(CheckpointTest, ShardedIndex) {
  TempDir dir;
  WriteTwoShards(dir, kIndex);
  auto ckpt = Checkpoint::Open(dir.path());
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->source(), dir.File("model.safetensors.index.json"));
  EXPECT_EQ((*ckpt)->FileOf("b"), dir.File("model-00002-of-00002.safetensors"));
  auto b = (*ckpt)->Tensor("b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(FromBytes<uint16_t>(std::string(reinterpret_cast<const char*>(b->data), 6))[1], 0xc000);
  auto missing = (*ckpt)->Tensor("c");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(),
              AllOf(HasSubstr("model.safetensors.index.json"), HasSubstr("'c'")));
}

TEST(CheckpointTest, IndexPointsAtMissingShard) {
  TempDir dir;
  WriteTwoShards(dir, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                         "b": "model-00003-of-00002.safetensors"}})");
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(),
              AllOf(HasSubstr(dir.File("model.safetensors.index.json")), HasSubstr("'b'"),
                    HasSubstr("model-00003-of-00002.safetensors")));
}

TEST(CheckpointTest, IndexedTensorAbsentFromShard) {
  TempDir dir;
  WriteTwoShards(dir, R"({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                         "b": "model-00001-of-00002.safetensors"}})");
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(),
              AllOf(HasSubstr(dir.File("model-00001-of-00002.safetensors")), HasSubstr("'b'")));
}

TEST(CheckpointTest, BrokenShardIsReportedThroughTheIndex) {
  TempDir dir;
  WriteTwoShards(dir, kIndex);
  WriteFile(dir.File("model-00002-of-00002.safetensors"), "abc");
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ckpt.status().message(),
              AllOf(HasSubstr("model-00002-of-00002.safetensors"), HasSubstr("truncated")));
}

TEST(CheckpointTest, BadIndexFiles) {
  const std::string kBad[] = {
      "{not json",
      R"({"metadata": {}})",
      R"({"weight_map": {"a": 3}})",
      R"({"weight_map": {"a": "../model-00001-of-00002.safetensors"}})",
      R"({"weight_map": {"a": "/etc/passwd"}})",
  };
  for (const std::string& index : kBad) {
    TempDir dir;
    WriteTwoShards(dir, index);
    auto ckpt = Checkpoint::Open(dir.path());
    EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kInvalidArgument) << index;
    EXPECT_THAT(ckpt.status().message(), HasSubstr("model.safetensors.index.json")) << index;
  }
}

TEST(CheckpointTest, EmptyDirectory) {
  TempDir dir;
  auto ckpt = Checkpoint::Open(dir.path());
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ckpt.status().message(), HasSubstr(dir.path()));
}

}  // namespace
}  // namespace mla
