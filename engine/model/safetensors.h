// Read-only access to one .safetensors file through mmap.
//
// Format: a little-endian u64 header length N, N bytes of JSON
//   {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}
// and then the tensor data; offsets are relative to byte 8 + N, tensors are row-major and
// little-endian. Open() validates the whole header (types, offsets inside the file, sizes
// matching dtype x shape, no overlapping ranges) so that later reads never leave the
// mapping. Every error names the file and, where there is one, the tensor.
#ifndef MLA_ENGINE_MODEL_SAFETENSORS_H_
#define MLA_ENGINE_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/common/tensor.h"

namespace mla {

// Headers larger than this are refused: real checkpoints need a few MB at most, and the
// limit keeps a corrupt length from making us parse gigabytes of garbage.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// One tensor's header entry.
struct TensorInfo {
  std::string name;
  std::string dtype_name;      // As written in the header, e.g. "BF16".
  std::optional<DType> dtype;  // Empty for valid safetensors dtypes the engine cannot read.
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // From the start of the data section.
  uint64_t nbytes = 0;

  int64_t NumElements() const;
  std::string ShapeString() const;  // "[2, 3]"
};

// A tensor's header entry and its bytes inside the mapping (not necessarily aligned).
struct TensorView {
  const TensorInfo* info = nullptr;
  const std::byte* data = nullptr;
  const std::string* file = nullptr;  // Path of the file holding it, for error messages.

  DType dtype() const { return *info->dtype; }
  const std::vector<int64_t>& shape() const { return info->shape; }
  int64_t NumElements() const { return info->NumElements(); }
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. InvalidArgument for malformed files, NotFound when absent.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Header entries in name order.
  const std::map<std::string, TensorInfo, std::less<>>& tensors() const { return tensors_; }
  bool Contains(absl::string_view name) const { return tensors_.contains(name); }

  // The tensor `name`: NotFound when absent, InvalidArgument when its dtype is not one of
  // BF16, F16, F32, F8_E4M3, I32, I64.
  absl::StatusOr<TensorView> Tensor(absl::string_view name) const;

  // Drops the pages of `view` from this process's resident set once it has been
  // converted, so that loading holds about one copy of the model; a later read maps
  // the pages in again.
  void ReleasePages(const TensorView& view) const;

 private:
  SafetensorsFile(std::string path, const std::byte* map, size_t map_size)
      : path_(std::move(path)), map_(map), map_size_(map_size) {}
  absl::Status ParseHeader();

  std::string path_;
  const std::byte* map_ = nullptr;
  size_t map_size_ = 0;
  const std::byte* data_ = nullptr;  // map_ + 8 + N
  uint64_t data_size_ = 0;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo, std::less<>> tensors_;
};

// Parses a header's JSON text (the N bytes after the length) for a data section of
// `data_size` bytes. Exposed for tests and fuzzing; Open() uses it.
absl::StatusOr<std::map<std::string, TensorInfo, std::less<>>> ParseSafetensorsHeader(
    absl::string_view json_text, uint64_t data_size, absl::string_view file,
    std::map<std::string, std::string>* metadata);

// Converts `count` little-endian elements of a float dtype (F32, BF16, F16, F8_E4M3) to
// float. `src` need not be aligned. Integer dtypes are a programming error (returns false).
bool ConvertToFloat(DType dtype, const std::byte* src, size_t count, float* dst);

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_SAFETENSORS_H_
