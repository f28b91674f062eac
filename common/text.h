// Text that must be stored or shown whatever bytes it came with (a reason naming a path, a log
// excerpt, a program's error message).
#pragma once

#include <string>
#include <string_view>

namespace kiln {

// `text` as valid UTF-8 without NUL bytes: every byte that is not part of a well-formed UTF-8
// sequence (overlong forms, surrogates and code points above U+10FFFF included) and every NUL
// becomes U+FFFD. Valid text comes back unchanged. O(size).
std::string SafeUtf8(std::string_view text);

// True when SafeUtf8(text) == text.
bool IsSafeUtf8(std::string_view text);

}  // namespace kiln
