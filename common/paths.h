// Paths as kiln confines them: a file must lie beneath a folder, judged on the text of the paths
// (the open that follows must then not leave the folder either: openat2 RESOLVE_BENEATH).
#pragma once

#include <filesystem>
#include <optional>

namespace kiln {

// `inner` relative to `outer` when it lies strictly beneath it (both absolute and lexically
// normal); nullopt when it does not, is `outer` itself, or `outer` is empty.
std::optional<std::filesystem::path> PathBeneath(const std::filesystem::path& inner,
                                                 const std::filesystem::path& outer);

}  // namespace kiln
