#include "common/time.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <limits>

namespace kiln {

namespace {

constexpr std::string_view kAccepted =
    "expected numbers with units ms, s, m, h, d, e.g. \"90s\", \"1h30m\", \"250ms\"";

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  auto error = [&](std::string_view why) {
    return Status::Error("invalid duration \"" + std::string(text) + "\": " + std::string(why) +
                         "; " + std::string(kAccepted));
  };
  if (text == "0") return Duration(0);
  if (text.empty()) return error("empty");
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return error("number expected");
    int64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      if (n > std::numeric_limits<int64_t>::max() / 10 - 10) return error("too large");
      n = n * 10 + (text[i] - '0');
      ++i;
    }
    int64_t unit = 0;
    if (text.substr(i, 2) == "ms") {
      unit = 1;
      i += 2;
    } else if (i < text.size()) {
      switch (text[i]) {
        case 's':
          unit = 1000;
          break;
        case 'm':
          unit = 60 * 1000;
          break;
        case 'h':
          unit = 3600 * 1000;
          break;
        case 'd':
          unit = 86400 * 1000;
          break;
        default:
          return error("unknown unit '" + std::string(1, text[i]) + "'");
      }
      ++i;
    } else {
      return error("unit missing after " + std::to_string(n));
    }
    if (n > std::numeric_limits<int64_t>::max() / unit) return error("too large");
    n *= unit;
    if (total > std::numeric_limits<int64_t>::max() - n) return error("too large");
    total += n;
  }
  return Duration(total);
}

std::string FormatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  constexpr std::pair<int64_t, const char*> kUnits[] = {
      {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& [size, name] : kUnits) {
    if (ms >= size) {
      out += std::to_string(ms / size) + name;
      ms %= size;
    }
  }
  return out;
}

std::string FormatRfc3339(Instant t) {
  auto ms = t.time_since_epoch().count();
  int64_t secs = ms / 1000;
  int64_t frac = ms % 1000;
  if (frac < 0) {
    frac += 1000;
    secs -= 1;
  }
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out(buf, n);
  if (frac != 0) {
    std::snprintf(buf, sizeof buf, ".%03lld", static_cast<long long>(frac));
    out += buf;
  }
  out += 'Z';
  return out;
}

Instant NowUtc() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

}  // namespace kiln
