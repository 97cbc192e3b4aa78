// A Hugging Face checkpoint directory: either one `model.safetensors`, or
// `model.safetensors.index.json` whose `weight_map` sends each tensor name to a shard file
// in the same directory. Tensors are looked up by name; the name-to-shard map is what later
// lets each device load only its own part.
#ifndef MLA_ENGINE_MODEL_CHECKPOINT_H_
#define MLA_ENGINE_MODEL_CHECKPOINT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/model/safetensors.h"

namespace mla {

inline constexpr absl::string_view kSafetensorsSingleFile = "model.safetensors";
inline constexpr absl::string_view kSafetensorsIndexFile = "model.safetensors.index.json";

class Checkpoint {
 public:
  // Opens `model_dir`, preferring the single file when both layouts are present. Every
  // shard the index names is mapped and every indexed tensor is checked to be in its
  // shard, so that a broken checkpoint fails here and not halfway through loading.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);

  // model.safetensors or the index file: what error messages about lookups name.
  const std::string& source() const { return source_; }
  bool Contains(absl::string_view name) const { return where_.contains(name); }
  std::vector<std::string> TensorNames() const;
  // Path of the file holding `name`, or empty when absent.
  std::string FileOf(absl::string_view name) const;
  // NotFound (naming the checkpoint file and the tensor) when absent; see
  // SafetensorsFile::Tensor for the other errors.
  absl::StatusOr<TensorView> Tensor(absl::string_view name) const;
  // See SafetensorsFile::ReleasePages.
  void ReleasePages(const TensorView& view) const;

 private:
  Checkpoint() = default;
  absl::Status OpenIndex(const std::string& model_dir, const std::string& index_path);

  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*, std::less<>> where_;
};

}  // namespace mla

#endif  // MLA_ENGINE_MODEL_CHECKPOINT_H_
