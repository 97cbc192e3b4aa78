#include "engine/tokenizer/file_util.h"

#include <lzma.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mla {

absl::StatusOr<std::string> DecompressXz(absl::string_view compressed, absl::string_view name) {
  lzma_stream stream = LZMA_STREAM_INIT;
  if (lzma_stream_decoder(&stream, UINT64_MAX, 0) != LZMA_OK) {
    return absl::InternalError(absl::StrCat(name, ": cannot start the xz decoder"));
  }
  std::string out;
  std::string chunk(1 << 20, '\0');
  stream.next_in = reinterpret_cast<const uint8_t*>(compressed.data());
  stream.avail_in = compressed.size();
  lzma_ret ret = LZMA_OK;
  while (ret == LZMA_OK) {
    stream.next_out = reinterpret_cast<uint8_t*>(chunk.data());
    stream.avail_out = chunk.size();
    // LZMA_FINISH: all input is already here.
    ret = lzma_code(&stream, LZMA_FINISH);
    out.append(chunk.data(), chunk.size() - stream.avail_out);
  }
  lzma_end(&stream);
  if (ret != LZMA_STREAM_END) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a valid xz file (liblzma error ", static_cast<int>(ret), ")"));
  }
  return out;
}

absl::StatusOr<std::string> ReadTokenizerFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  if (absl::EndsWith(path, ".xz")) return DecompressXz(contents.str(), path);
  return contents.str();
}

}  // namespace mla
