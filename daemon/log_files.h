// Reading attempt logs for the API without ever leaving the log folder: the file is opened
// relative to the folder with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so neither ".."
// nor a symlink planted anywhere on the way can lead outside it.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "common/status.h"

namespace kiln::daemon {

struct LogRange {
  std::string data;
  uint64_t size = 0;  // the file's size when read
};

// Up to `max_bytes` of `file` from `offset`. `file` must lie beneath `root` (absolute paths are
// made relative to it first); anything else is kNotFound, as is a missing file.
Result<LogRange> ReadLogRange(const std::filesystem::path& root, const std::filesystem::path& file,
                              uint64_t offset, size_t max_bytes);

// Blocks until `file` (beneath `root`) is written to or closed after writing, or `timeout`
// passes. `closed` is set when the writer closed it. Returns false at once when the file's folder
// cannot be watched (it does not exist yet, say).
bool WaitForLogChange(const std::filesystem::path& root, const std::filesystem::path& file,
                      uint64_t offset, std::chrono::milliseconds timeout, bool* closed);

}  // namespace kiln::daemon
