#include "common/paths.h"

#include <algorithm>

namespace kiln {

std::optional<std::filesystem::path> PathBeneath(const std::filesystem::path& inner,
                                                 const std::filesystem::path& outer) {
  if (outer.empty()) return std::nullopt;
  auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  // A trailing separator of `outer` is an empty last element.
  if (o != outer.end() && !(std::next(o) == outer.end() && o->empty())) return std::nullopt;
  std::filesystem::path rest;
  for (; i != inner.end(); ++i) rest /= *i;
  if (rest.empty() || *rest.begin() == "..") return std::nullopt;
  return rest;
}

}  // namespace kiln
