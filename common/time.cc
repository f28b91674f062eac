#include "common/time.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <limits>

namespace kiln {

namespace {

constexpr std::string_view kAccepted =
    "expected numbers with units ms, s, m, h, d, e.g. \"90s\", \"1h30m\", \"250ms\"";

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t DaysFromCivil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int DaysInMonth(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// A cursor over RFC 3339 text; each method consumes on success.
class TimeReader {
 public:
  explicit TimeReader(std::string_view text) : text_(text) {}
  bool Digits(int count, int& out) {
    out = 0;
    for (int k = 0; k < count; ++k, ++i_) {
      if (i_ >= text_.size() || !std::isdigit(static_cast<unsigned char>(text_[i_]))) return false;
      out = out * 10 + (text_[i_] - '0');
    }
    return true;
  }
  bool Char(std::string_view accepted) {
    if (i_ >= text_.size() || accepted.find(text_[i_]) == std::string_view::npos) return false;
    ++i_;
    return true;
  }
  char Peek() const { return i_ < text_.size() ? text_[i_] : '\0'; }
  bool AtEnd() const { return i_ == text_.size(); }
  // Milliseconds of a fraction after '.', any number of digits (at least one), truncated.
  bool Fraction(int& ms) {
    ms = 0;
    int count = 0;
    while (i_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[i_]))) {
      if (count < 3) ms = ms * 10 + (text_[i_] - '0');
      ++count;
      ++i_;
    }
    for (int k = count; k < 3; ++k) ms *= 10;
    return count > 0;
  }

 private:
  std::string_view text_;
  size_t i_ = 0;
};

}  // namespace

Result<Instant> ParseRfc3339(std::string_view text) {
  auto error = [&](std::string_view why) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "invalid time \"" + std::string(text) + "\": " + std::string(why) +
                             "; expected RFC 3339, e.g. \"2026-11-29T04:10:45Z\"");
  };
  TimeReader r(text);
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, ms = 0;
  if (!r.Digits(4, year) || !r.Char("-") || !r.Digits(2, month) || !r.Char("-") ||
      !r.Digits(2, day)) {
    return error("date must be YYYY-MM-DD");
  }
  if (!r.Char("Tt ") || !r.Digits(2, hour) || !r.Char(":") || !r.Digits(2, minute) ||
      !r.Char(":") || !r.Digits(2, second)) {
    return error("time must be THH:MM:SS");
  }
  if (r.Peek() == '.' && (!r.Char(".") || !r.Fraction(ms)))
    return error("digits expected after '.'");
  int offset_minutes = 0;
  if (r.Char("Zz")) {
    // UTC
  } else if (char sign = r.Peek(); r.Char("+-")) {
    int oh = 0, om = 0;
    if (!r.Digits(2, oh) || !r.Char(":") || !r.Digits(2, om) || oh > 23 || om > 59) {
      return error("offset must be +HH:MM or -HH:MM");
    }
    offset_minutes = (oh * 60 + om) * (sign == '-' ? -1 : 1);
  } else {
    return error("time zone missing (Z or +HH:MM)");
  }
  if (!r.AtEnd()) return error("unexpected text after the time zone");
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 59) {
    return error("no such date or time");
  }
  int64_t secs = ((DaysFromCivil(year, month, day) * 24 + hour) * 60 + minute) * 60 + second -
                 int64_t{offset_minutes} * 60;
  const Instant t(std::chrono::milliseconds(secs * 1000 + ms));
  // What RFC 3339 (four-digit years) and PostgreSQL (no year 0) can both hold, once in UTC.
  if (t < kEarliestInstant || t > kLatestInstant) {
    return error("outside the years 0001 to 9999 in UTC");
  }
  return t;
}

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
    // The unit is the letters after the number, whole: "3mo" is an unknown unit, not 3 minutes
    // and then something else.
    size_t end = i;
    while (end < text.size() && std::isalpha(static_cast<unsigned char>(text[end]))) ++end;
    const std::string_view word = text.substr(i, end - i);
    int64_t unit = 0;
    if (word == "ms") {
      unit = 1;
    } else if (word == "s") {
      unit = 1000;
    } else if (word == "m") {
      unit = 60 * 1000;
    } else if (word == "h") {
      unit = 3600 * 1000;
    } else if (word == "d") {
      unit = 86400 * 1000;
    } else if (!word.empty()) {
      return error("unknown unit '" + std::string(word) + "'");
    } else if (i < text.size()) {
      return error("unknown unit '" + std::string(1, text[i]) + "'");
    } else {
      return error("unit missing after " + std::to_string(n));
    }
    i = end;
    if (n > std::numeric_limits<int64_t>::max() / unit) return error("too large");
    n *= unit;
    if (total > std::numeric_limits<int64_t>::max() - n) return error("too large");
    total += n;
  }
  if (Duration(total) > kMaxDuration) {
    return Status::Error("invalid duration \"" + std::string(text) +
                         "\": longer than 3650d (ten years), the longest accepted");
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
  // Not strftime's %Y: it writes year 22 as "22", which RFC 3339 (four digits) cannot read.
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  std::string out(buf);
  if (frac != 0) {
    std::snprintf(buf, sizeof buf, ".%03lld", static_cast<long long>(frac));
    out += buf;
  }
  out += 'Z';
  return out;
}

std::string FormatRfc3339Millis(Instant t) {
  std::string out = FormatRfc3339(t);
  if (out.size() == 20) out.insert(19, ".000");  // "YYYY-MM-DDTHH:MM:SSZ" had no fraction
  return out;
}

Instant NowUtc() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

}  // namespace kiln
