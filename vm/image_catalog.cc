#include "vm/image_catalog.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace freeagent::vm {

absl::StatusOr<ImageEntry> ImageCatalog::Find(const std::string& name) const {
  if (name.empty() && entries_.size() == 1) return entries_.begin()->second;
  auto it = entries_.find(name);
  if (it != entries_.end()) return it->second;
  std::vector<std::string> names;
  for (const auto& [n, e] : entries_) names.push_back(n);
  std::string have = names.empty() ? "none" : absl::StrJoin(names, ", ");
  if (name.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the job names no image (vm.image) and this worker has several: ", have));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown image \"", name, "\": this worker has ", have));
}

}  // namespace freeagent::vm
