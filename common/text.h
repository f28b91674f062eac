// Text that must be stored or shown whatever bytes it came with (a reason naming a path, a log
// excerpt, a program's error message).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kiln {

// `text` as valid UTF-8 without NUL bytes: every byte that is not part of a well-formed UTF-8
// sequence (overlong forms, surrogates and code points above U+10FFFF included) and every NUL
// becomes U+FFFD. Valid text comes back unchanged. O(size).
std::string SafeUtf8(std::string_view text);

// True when SafeUtf8(text) == text.
bool IsSafeUtf8(std::string_view text);

// The candidate closest to `word` within edit distance 2, or an empty view.
std::string_view Closest(std::string_view word, std::span<const std::string_view> candidates);
// "; did you mean 'x'? (accepted: a, b, c)", or " (accepted: a, b, c)" when nothing is close.
std::string SuggestAccepted(std::string_view word, std::span<const std::string_view> accepted);

// The items with `separator` between them ("" for none).
std::string Join(std::span<const std::string> items, std::string_view separator);

// A decimal integer in [min, 2^63-1] without sign, spaces or leading zeros; nullopt otherwise
// (also when it is too large for 64 bits).
std::optional<int64_t> ParseDecimal(std::string_view text, int64_t min);

}  // namespace kiln
