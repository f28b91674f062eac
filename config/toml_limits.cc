#include "config/toml_limits.h"

#include <cstdio>
#include <utility>

namespace kiln::config::internal {
namespace {

bool IsBare(char c) {
  if (static_cast<unsigned char>(c) >= 0x80) return false;
  switch (c) {
    case ' ':
    case '\t':
    case '\r':
    case '\n':
    case '.':
    case '=':
    case ',':
    case '[':
    case ']':
    case '{':
    case '}':
    case '#':
    case '"':
    case '\'':
      return false;
    default:
      return true;
  }
}

class Scanner {
 public:
  Scanner(std::string_view text, const std::string& file, const TomlLimits& limits)
      : t_(text), file_(file), limits_(limits) {}

  std::optional<dag::Diagnostic> Run() {
    int nesting = 0;
    while (i_ < t_.size() && !error_) {
      const char c = t_[i_];
      if (c == '\n') {
        NewLine(i_ + 1);
        ++i_;
      } else if (c == '#') {
        while (i_ < t_.size() && t_[i_] != '\n') ++i_;
      } else if (c == '[' || c == '{') {
        if (++nesting > limits_.max_nesting) {
          Fail(i_, "arrays, inline tables and table names nested more than " +
                       std::to_string(limits_.max_nesting) + " deep (kiln reads at most " +
                       std::to_string(limits_.max_nesting) + ")");
        }
        ++i_;
      } else if (c == ']' || c == '}') {
        if (nesting > 0) --nesting;
        ++i_;
      } else if (static_cast<unsigned char>(c) >= 0x80) {
        NonAscii();
      } else if (c == '"' || c == '\'' || IsBare(c)) {
        Chain();
      } else {
        ++i_;
      }
    }
    return std::move(error_);
  }

 private:
  void NewLine(size_t next) {
    ++line_;
    line_start_ = next;
  }

  // Characters (UTF-8 lead bytes) from the line's start to `at`, plus one.
  int Column(size_t at) const {
    int column = 1;
    for (size_t k = line_start_; k < at && k < t_.size(); ++k) {
      if ((static_cast<unsigned char>(t_[k]) & 0xC0) != 0x80) ++column;
    }
    return column;
  }

  void Fail(size_t at, std::string what) {
    if (!error_) error_ = dag::Diagnostic{file_, {line_, Column(at)}, "", "invalid TOML: " + what};
  }

  void SkipBlanks() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\t')) ++i_;
  }

  bool Triple(char quote) const {
    return t_.size() - i_ >= 3 && t_[i_] == quote && t_[i_ + 1] == quote && t_[i_ + 2] == quote;
  }

  // A multi-line string from its opening quotes; newlines in it are counted.
  void SkipMultiLine(char quote) {
    i_ += 3;
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c == '\n') {
        NewLine(i_ + 1);
        ++i_;
      } else if (c == '\\' && quote == '"') {
        ++i_;
        while (i_ < t_.size() &&
               (t_[i_] == ' ' || t_[i_] == '\t' || t_[i_] == '\r' || t_[i_] == '\n')) {
          if (t_[i_] == '\n') NewLine(i_ + 1);
          ++i_;  // a line-ending backslash trims blanks and newlines
        }
        if (AfterBackslash()) ++i_;
      } else if (c == quote && Triple(quote)) {
        while (i_ < t_.size() && t_[i_] == quote) ++i_;  // up to two quotes end the content
        return;
      } else {
        ++i_;
      }
    }
  }

  // A one-line string from its opening quote; it ends at its closing quote or the line's end.
  void SkipOneLine(char quote) {
    ++i_;
    while (i_ < t_.size() && t_[i_] != quote && t_[i_] != '\n') {
      if (t_[i_] == '\\' && quote == '"') {
        ++i_;
        if (!AfterBackslash() || t_[i_] == '\n') continue;
      }
      ++i_;
    }
    if (i_ < t_.size() && t_[i_] == quote) ++i_;
  }

  // toml++ 3.3 asks whether a character is a blank at a few places, and its test reaches a path
  // it marks unreachable (undefined behaviour) for U+00A1-U+0499, U+2C5E-U+3057 but U+3000 and
  // U+FB26-U+FEFE. Those places are: outside strings and comments (where TOML 1.0 allows only
  // ASCII, so every other character is refused there), and in a basic string right after a
  // backslash or after the blanks and newlines a line-ending backslash trims.
  static bool UnsafeForToml(char32_t cp) {
    return (cp >= 0xA1 && cp <= 0x499) || (cp >= 0x2C5E && cp <= 0x3057 && cp != 0x3000) ||
           (cp >= 0xFB26 && cp <= 0xFEFE);
  }

  // At the character after a backslash in a basic string (and after what a line-ending
  // backslash trims): false, with the error set, when toml++ cannot be given it; else true
  // unless the text ended.
  bool AfterBackslash() {
    if (i_ >= t_.size()) return false;
    if (static_cast<unsigned char>(t_[i_]) < 0x80) return true;
    auto [cp, length] = Decode(t_.substr(i_, 4));
    if (length == 0 || !UnsafeForToml(cp)) return true;
    char escape[16];
    std::snprintf(escape, sizeof escape, "\\u%04X", static_cast<unsigned>(cp));
    Fail(i_, Describe(t_.substr(i_, 4)) +
                 " right after a backslash (or the blanks a line-ending backslash trims): the "
                 "TOML reader kiln uses cannot take it there; write it as " +
                 escape);
    return false;
  }

  // toml++ reads a value that starts with a digit or a sign (a number or a date) up to the next
  // blank, ',', ']', '}' or '#', at most 127 characters, whatever it holds (quotes too), asking
  // of each character whether it is a blank. Such a run followed by a character it cannot take
  // is refused (the value is not valid TOML either way, except after a key that starts with a
  // digit and is not followed by a blank: `1="é"`).
  bool ValueScanIsSafe() {
    const char first = t_[i_];
    if (!(first >= '0' && first <= '9') && first != '+' && first != '-') return true;
    constexpr size_t kWindow = 127;
    size_t k = i_;
    for (size_t seen = 0; k < t_.size() && seen < kWindow; ++seen) {
      const char c = t_[k];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ',' || c == ']' || c == '}' ||
          c == '#') {
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x80) {
        ++k;
        continue;
      }
      auto [cp, length] = Decode(t_.substr(k, 4));
      if (length == 0) return true;  // not UTF-8: toml++ stops there with its own error
      if (UnsafeForToml(cp)) {
        Fail(k, Describe(t_.substr(k, 4)) + " follows the value at column " +
                    std::to_string(Column(i_)) +
                    " with no blank, ',', ']' or '}' between them: the TOML reader kiln uses "
                    "cannot take it there; put a space after the value (or after a key that "
                    "starts with a digit)");
        return false;
      }
      k += length;
    }
    return true;
  }

  // TOML 1.0 allows other characters than ASCII only in strings and comments. A byte order mark
  // may open the file.
  void NonAscii() {
    if (i_ == 0 && t_.starts_with("\xEF\xBB\xBF")) {
      i_ = 3;
      line_start_ = 3;  // columns count from after the mark, as toml++'s do
      return;
    }
    Fail(i_, Describe(t_.substr(i_, 4)) +
                 " outside a string or comment (TOML allows only ASCII there)");
  }

  // "'é' (U+00E9)" for a character, "byte 0xFF (not UTF-8)" otherwise: never bytes that are
  // not UTF-8 in a message.
  static std::string Describe(std::string_view s) {
    auto [cp, length] = Decode(s);
    char code[32];
    if (length == 0) {
      std::snprintf(code, sizeof code, "byte 0x%02X (not UTF-8)", static_cast<unsigned char>(s[0]));
      return code;
    }
    std::snprintf(code, sizeof code, " (U+%04X)", static_cast<unsigned>(cp));
    return "'" + std::string(s.substr(0, length)) + "'" + code;
  }

  // The code point that `s` starts with and its length in bytes; length 0 when it is not UTF-8.
  static std::pair<char32_t, size_t> Decode(std::string_view s) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char lead = byte(0);
    const size_t length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 ? 2 : 0;
    char32_t cp = length == 4 ? lead & 0x07 : length == 3 ? lead & 0x0F : lead & 0x1F;
    bool valid = length != 0 && lead <= 0xF4 && s.size() >= length;
    for (size_t k = 1; valid && k < length; ++k) {
      valid = (byte(k) & 0xC0) == 0x80;
      cp = (cp << 6) | (byte(k) & 0x3F);
    }
    const char32_t min = length == 4 ? 0x10000 : length == 3 ? 0x800 : 0x80;
    valid = valid && cp >= min && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    if (!valid) return {0, 0};
    return {cp, length};
  }

  // Parts separated by dots (blanks around a dot allowed), each bare or quoted.
  void Chain() {
    const size_t start = i_;
    int parts = 0;
    while (i_ < t_.size()) {
      const char c = t_[i_];
      if (c == '"' || c == '\'') {
        if (Triple(c)) {  // a multi-line string is a value: it ends the chain
          SkipMultiLine(c);
          return;
        }
        SkipOneLine(c);
      } else if (IsBare(c)) {
        if (!ValueScanIsSafe()) return;
        while (i_ < t_.size() && IsBare(t_[i_])) ++i_;
      } else {
        return;
      }
      if (++parts > limits_.max_parts) {
        Fail(start, "a dotted key or table name of more than " + std::to_string(limits_.max_parts) +
                        " parts (kiln reads at most " + std::to_string(limits_.max_parts) + ")");
        return;
      }
      SkipBlanks();
      if (i_ >= t_.size() || t_[i_] != '.') return;
      ++i_;
      SkipBlanks();
    }
  }

  std::string_view t_;
  const std::string& file_;
  const TomlLimits& limits_;
  size_t i_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
  std::optional<dag::Diagnostic> error_;
};

}  // namespace

std::string SizeText(size_t bytes) {
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

std::optional<dag::Diagnostic> CheckTomlLimits(std::string_view text, const std::string& file,
                                               const TomlLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return dag::Diagnostic{file,
                           {},
                           "",
                           "file too large (" + std::to_string(text.size()) +
                               " bytes): kiln reads files of at most " +
                               SizeText(limits.max_bytes) + " here"};
  }
  return Scanner(text, file, limits).Run();
}

}  // namespace kiln::config::internal
