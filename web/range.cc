#include "web/range.h"

#include <cctype>
#include <optional>

#include "web/http.h"

namespace kiln::web {

namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A decimal number of at most 19 digits, or nullopt.
std::optional<uint64_t> Number(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

RangeRequest Refused(std::string why) {
  RangeRequest r;
  r.kind = RangeRequest::kRefused;
  r.why = std::move(why);
  return r;
}

}  // namespace

RangeRequest ParseRange(std::string_view header, uint64_t size) {
  header = Trim(header);
  size_t eq = header.find('=');
  if (eq == std::string_view::npos) return Refused("the Range header must be bytes=FIRST-LAST");
  std::string_view unit = Trim(header.substr(0, eq));
  if (AsciiLower(unit) != "bytes") return {};  // another unit: the whole representation
  std::string_view spec = Trim(header.substr(eq + 1));
  if (spec.find(',') != std::string_view::npos) {
    return Refused("one range per request: several ranges in one Range header are not served");
  }
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return Refused("the Range header must be bytes=FIRST-LAST");
  std::string_view a = Trim(spec.substr(0, dash));
  std::string_view b = Trim(spec.substr(dash + 1));
  RangeRequest r;
  r.kind = RangeRequest::kOne;
  if (a.empty()) {  // the last N bytes
    auto n = Number(b);
    if (!n) return Refused("the Range header must be bytes=FIRST-LAST, bytes=FIRST- or bytes=-N");
    if (*n == 0 || size == 0)
      return Refused("the range asks for no bytes of the " + std::to_string(size) + " there are");
    r.first = *n >= size ? 0 : size - *n;
    r.last = size - 1;
    return r;
  }
  auto first = Number(a);
  auto last = b.empty() ? std::optional<uint64_t>(UINT64_MAX) : Number(b);
  if (!first || !last || *last < *first) {
    return Refused(
        "the Range header must be bytes=FIRST-LAST with FIRST <= LAST, bytes=FIRST- "
        "or bytes=-N");
  }
  if (*first >= size) {
    return Refused("the range starts at byte " + std::to_string(*first) + "; there are " +
                   std::to_string(size));
  }
  r.first = *first;
  r.last = *last >= size ? size - 1 : *last;
  return r;
}

}  // namespace kiln::web
