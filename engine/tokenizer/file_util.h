// Reads tokenizer files, decompressing ".xz" ones (tests keep the 7.8 MB DeepSeek-V3
// tokenizer.json xz-compressed in the repository).
#ifndef MLA_ENGINE_TOKENIZER_FILE_UTIL_H_
#define MLA_ENGINE_TOKENIZER_FILE_UTIL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mla {

// The file's bytes; when `path` ends in ".xz", its decompressed contents.
absl::StatusOr<std::string> ReadTokenizerFile(const std::string& path);

// Decompresses an xz stream held in memory; `name` appears in errors.
absl::StatusOr<std::string> DecompressXz(absl::string_view compressed, absl::string_view name);

}  // namespace mla

#endif  // MLA_ENGINE_TOKENIZER_FILE_UTIL_H_
