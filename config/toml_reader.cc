#include "config/toml_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <limits>
#include <system_error>
#include <tuple>

namespace kiln::config::internal {

namespace {

// The type of a TOML value with its article, as in "expected an integer, got a string".
std::string_view Phrase(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

}  // namespace

Result<std::string> ReadFileText(const std::filesystem::path& file, size_t max_bytes) {
  // Non-blocking, so that a FIFO planted in the folder is refused instead of waited on.
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int error = errno;
    if (error == EISDIR) return Status::Error("cannot read file: it is a folder");
    return Status::Error("cannot read file: " + std::generic_category().message(error));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return Status::Error("cannot read file: " + std::generic_category().message(errno));
  }
  if (S_ISDIR(st.st_mode)) return Status::Error("cannot read file: it is a folder");
  if (!S_ISREG(st.st_mode)) {
    return Status::Error("cannot read file: not a regular file (a FIFO, socket or device)");
  }
  const auto too_large = [&](uint64_t size) {
    return Status::Error("file too large (" + std::to_string(size) +
                         " bytes): kiln reads files of at most " + SizeText(max_bytes) + " here");
  };
  if (static_cast<uint64_t>(st.st_size) > max_bytes) return too_large(st.st_size);
  std::string text;
  text.resize(std::min<uint64_t>(st.st_size, max_bytes) + 1);
  size_t got = 0;
  while (true) {
    if (got == text.size()) {
      if (text.size() > max_bytes) return too_large(got);  // it grew while being read
      text.resize(std::min<size_t>(text.size() * 2, max_bytes + 1));
    }
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Error("cannot read file: " + std::generic_category().message(errno));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return text;
}

namespace {

// Line `line` (1-based) of `text`, without its newline; "" past the end.
std::string_view LineAt(std::string_view text, size_t line) {
  size_t at = 0;
  for (size_t n = 1; n < line && at < text.size(); ++n) {
    at = text.find('\n', at);
    at = at == std::string_view::npos ? text.size() : at + 1;
  }
  if (line == 0 || at >= text.size()) return {};
  return text.substr(at, std::min(text.find('\n', at), text.size()) - at);
}

// The name of the table whose body holds `line` (1-based): the last [header] or [[header]]
// above it, "" for the top level. Only what a header line plainly says (no quoted dots).
std::string TableAt(std::string_view text, size_t line) {
  std::string table;
  size_t at = 0;
  for (size_t n = 1; n < line && at < text.size(); ++n) {
    const size_t end = std::min(text.find('\n', at), text.size());
    std::string_view row = text.substr(at, end - at);
    const size_t first = row.find_first_not_of(" \t");
    if (first != std::string_view::npos && row[first] == '[') {
      row.remove_prefix(first);
      const bool array = row.starts_with("[[");
      const size_t close = row.find(array ? "]]" : "]");
      // A header stands alone on its line (a comment aside) and names with bare words: a line of
      // a multi-line array ("  [1, 2],") is not one.
      const std::string_view after =
          close == std::string_view::npos ? "" : row.substr(close + (array ? 2 : 1));
      const size_t rest = after.find_first_not_of(" \t\r");
      const bool header = close != std::string_view::npos &&
                          (rest == std::string_view::npos || after[rest] == '#') &&
                          row.substr(0, close).find_first_of(",{\"'") == std::string_view::npos;
      if (header) {
        std::string name;
        for (char c : row.substr(array ? 2 : 1, close - (array ? 2 : 1))) {
          if (c != ' ' && c != '\t') name += c;
        }
        table = name;
      }
    }
    at = end + 1;
  }
  return table;
}

}  // namespace

dag::Diagnostic SyntaxDiagnostic(const std::string& file, const toml::parse_error& error,
                                 std::string_view text) {
  std::string description(error.description());
  if (!description.empty()) {
    description[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(description[0])));
  }
  const toml::source_position& p = error.source().begin;
  const dag::SourceLoc loc{static_cast<int>(p.line), static_cast<int>(p.column)};
  // A key or table given twice: named as a field, as every other mistake is.
  constexpr std::string_view kTwice = "cannot redefine existing ";
  const size_t twice = description.find(kTwice);
  const size_t open = description.find('\'');
  if (twice != std::string::npos && open != std::string::npos && description.back() == '\'') {
    const std::string name = description.substr(open + 1, description.size() - open - 2);
    if (description.find("parsing table header") != std::string::npos) {
      return {
          file, loc, name,
          "the table [" + name + "] is defined twice; put all its keys under one [" + name + "]"};
    }
    // Inside an inline table ({ ... }) the name is relative to it: the table above is shown.
    const std::string_view row = LineAt(text, p.line);
    const std::string table = TableAt(text, p.line);
    const bool inline_table = row.substr(0, p.column).find('{') != std::string_view::npos;
    const std::string field = inline_table ? table : (table.empty() ? name : table + "." + name);
    return {file, loc, field,
            "'" + name + "' is set twice" + (inline_table ? " in an inline table" : "") +
                "; set each key once"};
  }
  return {file, loc, "", "invalid TOML: " + description};
}

void SortByPosition(std::vector<dag::Diagnostic>& diagnostics) {
  std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const auto& a, const auto& b) {
    return std::tie(a.loc.line, a.loc.column) < std::tie(b.loc.line, b.loc.column);
  });
}

dag::SourceLoc LocOf(const toml::node& node) {
  const toml::source_position& p = node.source().begin;
  return {static_cast<int>(p.line), static_cast<int>(p.column)};
}

dag::SourceLoc LocOf(const toml::key& key) {
  const toml::source_position& p = key.source().begin;
  return {static_cast<int>(p.line), static_cast<int>(p.column)};
}

bool BeforeInFile(const toml::key& a, const toml::key& b) {
  const dag::SourceLoc x = LocOf(a);
  const dag::SourceLoc y = LocOf(b);
  return std::tie(x.line, x.column) < std::tie(y.line, y.column);
}

std::string JoinPath(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return std::string(path) + "." + std::string(key);
}

void TomlReader::Error(dag::SourceLoc loc, std::string field, std::string message) {
  diagnostics_.push_back({file_, loc, std::move(field), std::move(message)});
}

void TomlReader::UnknownKey(const toml::key& key, std::string_view path,
                            std::span<const std::string_view> accepted) {
  if (key.str().find('\0') != std::string_view::npos) return;  // reported by RejectNul
  Error(LocOf(key), JoinPath(path, key.str()),
        "unknown key '" + std::string(key.str()) + "'" + SuggestAccepted(key.str(), accepted));
}

void TomlReader::CheckKeys(const toml::table& table, std::string_view path,
                           std::span<const std::string_view> accepted) {
  for (const auto& [key, node] : table) {
    if (std::find(accepted.begin(), accepted.end(), key.str()) == accepted.end()) {
      UnknownKey(key, path, accepted);
    }
  }
}

void TomlReader::TypeError(const toml::node& node, const std::string& field,
                           std::string_view expected) {
  Error(LocOf(node), field,
        "expected " + std::string(expected) + ", got " + std::string(Phrase(node.type())));
}

void TomlReader::Reject(const toml::node& node, const std::string& field, std::string message) {
  Error(LocOf(node), field, std::move(message));
  rejected_.insert(field);
}

const toml::table* TomlReader::Table(const toml::node& node, const std::string& field) {
  if (const toml::table* t = node.as_table()) return t;
  TypeError(node, field, "a table");
  rejected_.insert(field);
  return nullptr;
}

void TomlReader::RejectNul(const toml::node& root, const std::string& root_path) {
  constexpr std::string_view kWhy =
      "holds a NUL character (\\u0000), which no command, argument, path or stored text can "
      "hold; remove it";
  // Iterative: nesting as deep as the limits allow must not exhaust a small stack.
  std::vector<std::pair<const toml::node*, std::string>> todo{{&root, root_path}};
  while (!todo.empty()) {
    auto [node, path] = std::move(todo.back());
    todo.pop_back();
    if (const auto* text = node->as_string()) {
      if (text->get().find('\0') != std::string::npos) Reject(*node, path, std::string(kWhy));
    } else if (const auto* table = node->as_table()) {
      for (const auto& [key, value] : *table) {
        if (key.str().find('\0') != std::string_view::npos) {
          Error(LocOf(key), path.empty() ? "(a key)" : path + ".(a key)",
                "a key " + std::string(kWhy));
          continue;
        }
        todo.emplace_back(&value, JoinPath(path, key.str()));
      }
    } else if (const auto* array = node->as_array()) {
      for (size_t i = 0; i < array->size(); ++i) {
        todo.emplace_back(array->get(i), path + "[" + std::to_string(i) + "]");
      }
    }
  }
}

std::optional<std::string> TomlReader::String(const toml::node& node, const std::string& field) {
  if (const auto* s = node.as_string()) return s->get();
  TypeError(node, field, "a string");
  rejected_.insert(field);
  return std::nullopt;
}

std::optional<int64_t> TomlReader::Integer(const toml::node& node, const std::string& field) {
  if (const auto* i = node.as_integer()) return i->get();
  TypeError(node, field, "an integer");
  rejected_.insert(field);
  return std::nullopt;
}

std::optional<int> TomlReader::ToInt(const toml::node& node, const std::string& field,
                                     int64_t value) {
  constexpr int64_t kMin = std::numeric_limits<int>::min();
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  if (value >= kMin && value <= kMax) return static_cast<int>(value);
  Error(LocOf(node), field,
        "integer " + std::to_string(value) + " is out of range (" + std::to_string(kMin) + " to " +
            std::to_string(kMax) + ")");
  return std::nullopt;
}

std::optional<int> TomlReader::Int(const toml::node& node, const std::string& field) {
  std::optional<int64_t> value = Integer(node, field);
  if (!value) return std::nullopt;
  std::optional<int> narrow = ToInt(node, field, *value);
  if (!narrow) rejected_.insert(field);
  return narrow;
}

std::optional<double> TomlReader::Number(const toml::node& node, const std::string& field) {
  if (const auto* d = node.as_floating_point()) return d->get();
  if (const auto* i = node.as_integer()) return static_cast<double>(i->get());
  TypeError(node, field, "a number");
  rejected_.insert(field);
  return std::nullopt;
}

std::optional<bool> TomlReader::Bool(const toml::node& node, const std::string& field) {
  if (const auto* b = node.as_boolean()) return b->get();
  TypeError(node, field, "a boolean");
  rejected_.insert(field);
  return std::nullopt;
}

std::optional<Duration> TomlReader::DurationValue(const toml::node& node,
                                                  const std::string& field) {
  const auto* s = node.as_string();
  // A bare 0 needs no unit: the format's "(0 = none)" reads as either.
  if (const auto* i = node.as_integer(); i != nullptr && i->get() == 0) return Duration(0);
  if (s == nullptr) {
    TypeError(node, field, "a duration string such as \"90s\" or \"1h30m\"");
    rejected_.insert(field);
    return std::nullopt;
  }
  Result<Duration> d = ParseDuration(s->get());
  if (d.ok()) return *d;
  Reject(node, field, d.message());
  return std::nullopt;
}

const toml::array* TomlReader::Array(const toml::node& node, const std::string& field,
                                     std::string_view expected) {
  if (const toml::array* a = node.as_array()) return a;
  TypeError(node, field, expected);
  rejected_.insert(field);
  return nullptr;
}

std::optional<std::vector<std::string>> TomlReader::Strings(const toml::node& node,
                                                            const std::string& field,
                                                            LocMap* locs) {
  const toml::array* array = Array(node, field, "an array of strings");
  if (array == nullptr) return std::nullopt;
  std::vector<std::string> out;
  for (const toml::node& item : *array) {
    const auto* s = item.as_string();
    if (s == nullptr) {
      TypeError(item, field, "a string");
      continue;
    }
    if (locs != nullptr) (*locs)[field + "[" + std::to_string(out.size()) + "]"] = LocOf(item);
    out.push_back(s->get());
  }
  return out;
}

std::optional<std::vector<int>> TomlReader::Ints(const toml::node& node, const std::string& field,
                                                 LocMap* locs) {
  const toml::array* array = Array(node, field, "an array of integers");
  if (array == nullptr) return std::nullopt;
  std::vector<int> out;
  for (const toml::node& item : *array) {
    const auto* i = item.as_integer();
    if (i == nullptr) {
      TypeError(item, field, "an integer");
      continue;
    }
    std::optional<int> value = ToInt(item, field, i->get());
    if (!value) continue;
    if (locs != nullptr) (*locs)[field + "[" + std::to_string(out.size()) + "]"] = LocOf(item);
    out.push_back(*value);
  }
  return out;
}

}  // namespace kiln::config::internal
