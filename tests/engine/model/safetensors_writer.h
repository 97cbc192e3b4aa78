// Test support: writes safetensors files (valid or deliberately broken) into a temporary
// directory, and decodes fp8/f16 independently of engine/common/bf16.h.
#ifndef MLA_TESTS_ENGINE_MODEL_SAFETENSORS_WRITER_H_
#define MLA_TESTS_ENGINE_MODEL_SAFETENSORS_WRITER_H_

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace mla::testing {

// One tensor to write: `bytes` is its raw little-endian data.
struct TestTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
using TensorMap = std::map<std::string, TestTensor>;

// A fresh directory removed (with its contents) when the test ends.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = "mla_st_";
    if (info != nullptr) name += std::string(info->test_suite_name()) + "_" + info->name();
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    path_ = std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string LengthPrefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// Writes the u64 length of `header`, the header and `data` verbatim.
inline void WriteRawSafetensors(const std::string& path, const std::string& header,
                                const std::string& data) {
  WriteFile(path, LengthPrefix(header.size()) + header + data);
}

// Writes a valid file: tensors laid out back to back in name order.
inline void WriteSafetensors(const std::string& path, const TensorMap& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const auto& [name, t] : tensors) {
    header[name] = {{"dtype", t.dtype},
                    {"shape", t.shape},
                    {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  WriteRawSafetensors(path, header.dump(), data);
}

template <typename T>
std::string ToBytes(const std::vector<T>& values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), values.data(), s.size());
  return s;
}

template <typename T>
std::vector<T> FromBytes(const std::string& bytes) {
  std::vector<T> v(bytes.size() / sizeof(T));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
  return v;
}

// Reference decoders written from the format definitions, not from bf16.h.
inline float RefFp8E4M3(uint8_t v) {
  const int sign = (v & 0x80) ? -1 : 1;
  const int exp = (v >> 3) & 0xf, mant = v & 0x7;
  if (exp == 0xf && mant == 0x7) return std::nanf("");
  if (exp == 0) return sign * std::ldexp(mant / 8.0f, -6);
  return sign * std::ldexp(1.0f + mant / 8.0f, exp - 7);
}

inline float RefF16(uint16_t v) {
  const int sign = (v & 0x8000) ? -1 : 1;
  const int exp = (v >> 10) & 0x1f, mant = v & 0x3ff;
  if (exp == 0x1f) return mant == 0 ? sign * INFINITY : std::nanf("");
  if (exp == 0) return sign * std::ldexp(mant / 1024.0f, -14);
  return sign * std::ldexp(1.0f + mant / 1024.0f, exp - 15);
}

}  // namespace mla::testing

#endif  // MLA_TESTS_ENGINE_MODEL_SAFETENSORS_WRITER_H_
