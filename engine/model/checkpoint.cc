#include "engine/model/checkpoint.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace mla {
namespace {

using Json = nlohmann::json;

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::StatusOr<Json> ReadIndexJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  Json root = Json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  }
  if (!root.is_object() || !root.contains("weight_map") || !root["weight_map"].is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": must be an object with a 'weight_map' object"));
  }
  return root;
}

// Shards live beside the index; a name with a directory part could point anywhere.
bool IsPlainFileName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find_first_of("/\\") == std::string::npos;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  const std::string single = absl::StrCat(model_dir, "/", kSafetensorsSingleFile);
  const std::string index = absl::StrCat(model_dir, "/", kSafetensorsIndexFile);
  if (FileExists(single)) {
    MLA_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(single));
    for (const auto& [name, info] : file->tensors()) ckpt->where_.emplace(name, file.get());
    ckpt->source_ = single;
    ckpt->files_.push_back(std::move(file));
    return ckpt;
  }
  if (FileExists(index)) {
    ckpt->source_ = index;
    MLA_RETURN_IF_ERROR(ckpt->OpenIndex(model_dir, index));
    return ckpt;
  }
  return absl::NotFoundError(absl::StrCat(model_dir, ": neither ", kSafetensorsSingleFile, " nor ",
                                          kSafetensorsIndexFile, " found"));
}

absl::Status Checkpoint::OpenIndex(const std::string& model_dir, const std::string& index_path) {
  MLA_ASSIGN_OR_RETURN(const Json root, ReadIndexJson(index_path));
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [tensor, shard_json] : root["weight_map"].items()) {
    if (!shard_json.is_string() || !IsPlainFileName(shard_json.get<std::string>())) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map entry for tensor '", tensor,
                       "' must be the file name of a shard in the same directory"));
    }
    const std::string shard = shard_json.get<std::string>();
    auto it = shards.find(shard);
    if (it == shards.end()) {
      auto file = SafetensorsFile::Open(absl::StrCat(model_dir, "/", shard));
      if (!file.ok()) {
        return absl::Status(file.status().code(),
                            absl::StrCat(index_path, ": tensor '", tensor, "' maps to shard '",
                                         shard, "': ", file.status().message()));
      }
      it = shards.emplace(shard, file->get()).first;
      files_.push_back(std::move(file).value());
    }
    if (!it->second->Contains(tensor)) {
      return absl::NotFoundError(absl::StrCat(it->second->path(), ": tensor '", tensor,
                                              "' is listed in ", kSafetensorsIndexFile,
                                              " but missing from this shard"));
    }
    where_.emplace(tensor, it->second);
  }
  return absl::OkStatus();
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(where_.size());
  for (const auto& [name, file] : where_) names.push_back(name);
  return names;
}

std::string Checkpoint::FileOf(absl::string_view name) const {
  auto it = where_.find(name);
  return it == where_.end() ? std::string() : it->second->path();
}

absl::StatusOr<TensorView> Checkpoint::Tensor(absl::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) {
    return absl::NotFoundError(absl::StrCat(source_, ": tensor '", name, "' is missing"));
  }
  return it->second->Tensor(name);
}

void Checkpoint::ReleasePages(const TensorView& view) const {
  auto it = where_.find(view.info->name);
  if (it != where_.end()) it->second->ReleasePages(view);
}

}  // namespace mla
