// Private to plugins/: copying a file's bytes between descriptors while hashing them, for the
// result cache (the collector keeping an output, `kiln task cache` putting one back).
#pragma once

#include <string>

#include "common/status.h"

namespace kiln::plugins {

// Copies everything `from` reads into `to`, retrying interrupted calls; the SHA-256 (hex) of
// what was copied, or why it stopped ("cannot be copied: <errno text>").
Result<std::string> CopyHashing(int from, int to);

}  // namespace kiln::plugins
