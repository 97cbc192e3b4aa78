#include "engine/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/bf16.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace mla {
namespace {

// Tensor bytes are copied straight into host-order arrays.
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

using Json = nlohmann::json;

struct DTypeEntry {
  absl::string_view name;
  size_t size;
  std::optional<DType> dtype;  // Empty: a valid safetensors dtype the engine does not read.
};

// Every dtype the safetensors format defines, so that files holding extra tensors of
// other types (masks, integer buffers) still open; only reading such a tensor fails.
constexpr DTypeEntry kDTypes[] = {
    {"BF16", 2, DType::kBF16},      {"F16", 2, DType::kF16},  {"F32", 4, DType::kF32},
    {"F8_E4M3", 1, DType::kF8E4M3}, {"I32", 4, DType::kI32},  {"I64", 8, DType::kI64},
    {"BOOL", 1, std::nullopt},      {"U8", 1, std::nullopt},  {"I8", 1, std::nullopt},
    {"F8_E5M2", 1, std::nullopt},   {"I16", 2, std::nullopt}, {"U16", 2, std::nullopt},
    {"U32", 4, std::nullopt},       {"U64", 8, std::nullopt}, {"F64", 8, std::nullopt},
};

const DTypeEntry* FindDType(absl::string_view name) {
  for (const DTypeEntry& e : kDTypes) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

absl::Status TensorError(absl::string_view file, absl::string_view tensor, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", tensor, "': ", what));
}

// Reads a non-negative JSON integer; false for anything else (negative, float, string).
bool GetUnsigned(const Json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

// Fills `info` from one header entry, checking types, offsets and the byte length.
absl::Status ParseEntry(const std::string& name, const Json& entry, uint64_t data_size,
                        absl::string_view file, TensorInfo* info) {
  auto fail = [&](absl::string_view what) { return TensorError(file, name, what); };
  if (!entry.is_object()) return fail("header entry is not an object");
  if (!entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets")) {
    return fail("header entry needs 'dtype', 'shape' and 'data_offsets'");
  }
  const Json& dtype = entry["dtype"];
  if (!dtype.is_string()) return fail("'dtype' is not a string");
  info->name = name;
  info->dtype_name = dtype.get<std::string>();
  const DTypeEntry* type = FindDType(info->dtype_name);
  if (type == nullptr) return fail(absl::StrCat("unsupported dtype '", info->dtype_name, "'"));
  info->dtype = type->dtype;

  const Json& shape = entry["shape"];
  if (!shape.is_array()) return fail("'shape' is not a list");
  uint64_t elements = 1;
  for (const Json& d : shape) {
    uint64_t dim;
    if (!GetUnsigned(d, &dim)) return fail("'shape' must hold non-negative integers");
    if (dim > static_cast<uint64_t>(INT64_MAX) ||
        __builtin_mul_overflow(elements, dim, &elements)) {
      return fail("'shape' is too large");
    }
    info->shape.push_back(static_cast<int64_t>(dim));
  }
  uint64_t nbytes;
  if (elements > static_cast<uint64_t>(INT64_MAX) ||
      __builtin_mul_overflow(elements, static_cast<uint64_t>(type->size), &nbytes)) {
    return fail("'shape' is too large");
  }

  const Json& offsets = entry["data_offsets"];
  uint64_t begin, end;
  if (!offsets.is_array() || offsets.size() != 2 || !GetUnsigned(offsets[0], &begin) ||
      !GetUnsigned(offsets[1], &end)) {
    return fail("'data_offsets' must be two non-negative integers");
  }
  if (begin > end) return fail(absl::StrCat("data_offsets begin ", begin, " > end ", end));
  if (end > data_size) {
    return fail(absl::StrCat("data_offsets end ", end, " is beyond the data section (", data_size,
                             " bytes)"));
  }
  if (end - begin != nbytes) {
    return fail(absl::StrCat("holds ", end - begin, " bytes but ", info->dtype_name, " ",
                             info->ShapeString(), " needs ", nbytes));
  }
  info->offset = begin;
  info->nbytes = nbytes;
  return absl::OkStatus();
}

absl::Status ParseMetadata(const Json& meta, absl::string_view file,
                           std::map<std::string, std::string>* out) {
  if (!meta.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": '__metadata__' is not an object"));
  }
  for (const auto& [key, value] : meta.items()) {
    if (!value.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": '__metadata__' entry '", key, "' is not a string"));
    }
    if (out != nullptr) (*out)[key] = value.get<std::string>();
  }
  return absl::OkStatus();
}

// Accepts any JSON text and reports nothing: used with a non-strict parse, it tells
// whether a header starts with one complete JSON value (and has other bytes after it).
class JsonAcceptor final : public nlohmann::json_sax<Json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return true; }
  bool key(string_t&) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }
};

// Why `json_text` is not a header: the common mistake is a length prefix larger than the
// JSON, which then swallows tensor bytes, so that case gets its own message.
absl::Status InvalidHeaderJson(absl::string_view json_text, uint64_t data_size,
                               absl::string_view file) {
  JsonAcceptor acceptor;
  const bool prefix_is_json = Json::sax_parse(json_text.begin(), json_text.end(), &acceptor,
                                              nlohmann::json::input_format_t::json,
                                              /*strict=*/false);
  if (!prefix_is_json) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": header is not valid JSON"));
  }
  return absl::InvalidArgumentError(absl::StrCat(
      file, ": header length ", json_text.size(),
      " runs past the end of the JSON header (other bytes follow the JSON object)",
      data_size == 0 ? "; it reaches the end of the file, leaving no tensor data" : "",
      ": the 8-byte length prefix is wrong"));
}

// Tensors must not share bytes: a file where they do is corrupt or crafted.
absl::Status CheckNoOverlap(const std::map<std::string, TensorInfo, std::less<>>& tensors,
                            absl::string_view file) {
  std::vector<const TensorInfo*> sorted;
  for (const auto& [name, info] : tensors) {
    if (info.nbytes > 0) sorted.push_back(&info);
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    const TensorInfo& prev = *sorted[i - 1];
    if (sorted[i]->offset < prev.offset + prev.nbytes) {
      return TensorError(file, sorted[i]->name,
                         absl::StrCat("data_offsets overlap those of tensor '", prev.name, "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int64_t TensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<std::map<std::string, TensorInfo, std::less<>>> ParseSafetensorsHeader(
    absl::string_view json_text, uint64_t data_size, absl::string_view file,
    std::map<std::string, std::string>* metadata) {
  const Json root = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return InvalidHeaderJson(json_text, data_size, file);
  if (!root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": header is not a JSON object"));
  }
  std::map<std::string, TensorInfo, std::less<>> tensors;
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__") {
      MLA_RETURN_IF_ERROR(ParseMetadata(entry, file, metadata));
      continue;
    }
    TensorInfo info;
    MLA_RETURN_IF_ERROR(ParseEntry(name, entry, data_size, file, &info));
    tensors.emplace(name, std::move(info));
  }
  MLA_RETURN_IF_ERROR(CheckNoOverlap(tensors, file));
  return tensors;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = absl::StrCat(path, ": cannot open: ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::PermissionDeniedError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": truncated: ", size, " bytes, shorter than the 8-byte header length"));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // The mapping keeps the file alive.
  if (map == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat(path, ": mmap of ", size, " bytes failed: ", std::strerror(map_errno)));
  }
  std::unique_ptr<SafetensorsFile> file(
      new SafetensorsFile(path, static_cast<const std::byte*>(map), size));
  MLA_RETURN_IF_ERROR(file->ParseHeader());
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

absl::Status SafetensorsFile::ParseHeader() {
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {  // Little-endian regardless of the host.
    header_len = (header_len << 8) | static_cast<uint8_t>(map_[i]);
  }
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": header length ", header_len,
                                                   " exceeds the limit of ",
                                                   kMaxSafetensorsHeaderBytes, " bytes"));
  }
  if (header_len > map_size_ - 8) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": truncated: header length ", header_len,
                     " runs past the end of the file (", map_size_, " bytes, ", map_size_ - 8,
                     " after the 8-byte length)"));
  }
  data_ = map_ + 8 + header_len;
  data_size_ = map_size_ - 8 - header_len;
  const absl::string_view json(reinterpret_cast<const char*>(map_ + 8), header_len);
  MLA_ASSIGN_OR_RETURN(tensors_, ParseSafetensorsHeader(json, data_size_, path_, &metadata_));
  return absl::OkStatus();
}

absl::StatusOr<TensorView> SafetensorsFile::Tensor(absl::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": tensor '", name, "' is missing"));
  }
  const TensorInfo& info = it->second;
  if (!info.dtype.has_value()) {
    return TensorError(path_, name,
                       absl::StrCat("unsupported dtype '", info.dtype_name,
                                    "' (BF16, F16, F32, F8_E4M3, I32, I64)"));
  }
  return TensorView{&info, data_ + info.offset, &path_};
}

void SafetensorsFile::ReleasePages(const TensorView& view) const {
  static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t map_begin = reinterpret_cast<uintptr_t>(map_);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(view.data) / page * page;
  const uintptr_t end = std::min<uintptr_t>(
      (reinterpret_cast<uintptr_t>(view.data) + view.info->nbytes + page - 1) / page * page,
      map_begin + (map_size_ + page - 1) / page * page);
  // A private read-only mapping is never written, so dropping pages (even ones shared with
  // a neighbouring tensor) loses nothing: the next access reads them from the file again.
  if (begin >= map_begin && end > begin) {
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
  }
}

bool ConvertToFloat(DType dtype, const std::byte* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * sizeof(float));
      return true;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        dst[i] = Bf16ToFloat(v);
      }
      return true;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t v;
        std::memcpy(&v, src + 2 * i, 2);
        dst[i] = F16ToFloat(v);
      }
      return true;
    case DType::kF8E4M3:
      for (size_t i = 0; i < count; ++i) dst[i] = Fp8E4M3ToFloat(static_cast<uint8_t>(src[i]));
      return true;
    case DType::kI32:
    case DType::kI64:
      return false;
  }
  return false;
}

}  // namespace mla
