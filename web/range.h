// The Range header of a GET (RFC 9110, section 14): one range of bytes. Pure; fuzzed by
// fuzz/range.cc.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kiln::web {

struct RangeRequest {
  enum Kind {
    kNone,     // no range asked for (or in a unit other than bytes): send everything
    kOne,      // the bytes first..last, both included and within the representation
    kRefused,  // 416: `why` says why (not satisfiable, several ranges, unreadable)
  };
  Kind kind = kNone;
  uint64_t first = 0;
  uint64_t last = 0;
  std::string why;
};

// Reads `header` against a representation of `size` bytes. "bytes=A-B", "bytes=A-" and
// "bytes=-N" are read; a list of several ranges is refused (one request could otherwise ask for
// the same bytes a thousand times), as is a range that starts at or past the end.
RangeRequest ParseRange(std::string_view header, uint64_t size);

}  // namespace kiln::web
