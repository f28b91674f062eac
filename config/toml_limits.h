// Internal to config/: limits checked on a TOML text before toml++ parses it. toml++ builds a
// table per part of a dotted key or table name and frees them recursively, so a file holding
// one key of 100,000 parts overflows the stack; it also accepts arrays nested 256 deep. A text
// over a limit is refused with file:line:col like any other syntax error, and toml++ never sees
// it. The check is one pass over the bytes and understands only what it must: strings (all four
// kinds, so that dots and brackets inside them do not count), comments, brackets and dotted
// chains.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "dag/spec.h"

namespace kiln::config::internal {

struct TomlLimits {
  size_t max_bytes = 16u << 20;
  // Parts of one dotted chain outside strings: a key (`a.b.c = 1`), a table name (`[a.b.c]`),
  // or a value (a float has two).
  int max_parts = 32;
  // Arrays and inline tables open at once (a table name's brackets count while open).
  int max_nesting = 32;
};

// Pipeline files: a 10,000-task pipeline takes about 1 MiB, one of 100,000 tasks 6 to 10 MiB.
inline constexpr TomlLimits kPipelineLimits{};
// kiln.toml.
inline constexpr TomlLimits kConfigLimits{1u << 20, 32, 32};

// The first limit `text` breaks, as "invalid TOML: ..." at its line and column (columns count
// characters, as toml++'s do); nullopt when it breaks none.
std::optional<dag::Diagnostic> CheckTomlLimits(std::string_view text, const std::string& file,
                                               const TomlLimits& limits);

// "4 MiB", "512 KiB": a size limit as messages show it.
std::string SizeText(size_t bytes);

}  // namespace kiln::config::internal
