// Random bytes from the kernel's source (getrandom), for tokens and session values.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace kiln {

// Fills `out` with `size` random bytes. Fails only when the kernel refuses (never after boot).
Status RandomBytes(void* out, size_t size);

// `bytes` random bytes as lower-case hex; aborts if the kernel refuses.
std::string RandomHex(size_t bytes);

}  // namespace kiln
