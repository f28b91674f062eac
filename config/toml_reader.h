// Internal to config/: reads values out of a parsed toml++ document into plain types, reporting
// each problem as a dag::Diagnostic at the line and column of the offending key or value.
// Includes toml++ (a heavy header): include it from config/*.cc only.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/text.h"
#include "common/time.h"
#include "config/toml_limits.h"
#include "dag/spec.h"

namespace kiln::config::internal {

using LocMap = dag::LocMap;

// The bytes of `file`, a regular file (symbolic links followed) of at most `max_bytes`; the error
// reads "cannot read file: <reason>" or "file too large (...)". Never blocks on a FIFO.
Result<std::string> ReadFileText(const std::filesystem::path& file, size_t max_bytes);

// "invalid TOML: <toml++'s description>" at the position toml++ gives; a key or table given
// twice is named as a field instead ("tasks.a.retries: 'retries' is set twice; ..."), with the
// table found in `text` (the file's contents).
dag::Diagnostic SyntaxDiagnostic(const std::string& file, const toml::parse_error& error,
                                 std::string_view text);
// Stable sort by (line, column): file order, file-wide problems (line 0) first.
void SortByPosition(std::vector<dag::Diagnostic>& diagnostics);

dag::SourceLoc LocOf(const toml::node& node);
dag::SourceLoc LocOf(const toml::key& key);
// Orders keys as they appear in the file (toml++ tables iterate in name order).
bool BeforeInFile(const toml::key& a, const toml::key& b);

// "path.key", or "key" at the top level.
std::string JoinPath(std::string_view path, std::string_view key);

using kiln::Closest;          // common/text.h
using kiln::SuggestAccepted;  // common/text.h

// Collects the diagnostics of one file. Every reader returns nullopt after reporting a problem
// (wrong type, out of range, bad duration). Single-threaded, like everything in a loader.
class TomlReader {
 public:
  // `file` is the path as the caller gave it; it prefixes every diagnostic.
  explicit TomlReader(std::string file) : file_(std::move(file)) {}

  void Error(dag::SourceLoc loc, std::string field, std::string message);
  std::vector<dag::Diagnostic>& diagnostics() { return diagnostics_; }
  // Fields whose whole value was reported and dropped; later checks skip them so that one mistake
  // is one diagnostic.
  const std::set<std::string, std::less<>>& rejected() const { return rejected_; }

  // Reports `key` of the table at `path` as not one of `accepted` (sorted).
  void UnknownKey(const toml::key& key, std::string_view path,
                  std::span<const std::string_view> accepted);
  // Reports each key of `table` (at `path`) that is not in `accepted` (sorted).
  void CheckKeys(const toml::table& table, std::string_view path,
                 std::span<const std::string_view> accepted);

  // Reports every string (and key) under `node`, at `path`, that holds a NUL character: no
  // command, argument, environment value, path or text in the database can.
  void RejectNul(const toml::node& node, const std::string& path);

  // Reports "expected <expected>, got <the node's type>" (e.g. expected = "an integer").
  void TypeError(const toml::node& node, const std::string& field, std::string_view expected);

  const toml::table* Table(const toml::node& node, const std::string& field);
  std::optional<std::string> String(const toml::node& node, const std::string& field);
  std::optional<int64_t> Integer(const toml::node& node, const std::string& field);
  std::optional<int> Int(const toml::node& node, const std::string& field);
  // An integer or a float.
  std::optional<double> Number(const toml::node& node, const std::string& field);
  std::optional<bool> Bool(const toml::node& node, const std::string& field);
  // A string read by kiln::ParseDuration.
  std::optional<Duration> DurationValue(const toml::node& node, const std::string& field);
  // Arrays: each item of the wrong type is reported and left out. The location of each kept item
  // goes to `locs` as "field[i]" (i = index in the result) when `locs` is given.
  std::optional<std::vector<std::string>> Strings(const toml::node& node, const std::string& field,
                                                  LocMap* locs = nullptr);
  std::optional<std::vector<int>> Ints(const toml::node& node, const std::string& field,
                                       LocMap* locs = nullptr);

 private:
  void Reject(const toml::node& node, const std::string& field, std::string message);
  std::optional<int> ToInt(const toml::node& node, const std::string& field, int64_t value);
  const toml::array* Array(const toml::node& node, const std::string& field,
                           std::string_view expected);

  std::string file_;
  std::vector<dag::Diagnostic> diagnostics_;
  std::set<std::string, std::less<>> rejected_;
};

// [[notify]] tables at `path` ("notify"): each checked (on, webhook, format); the valid ones.
// Secret names in webhooks are checked by the caller, which knows them.
std::vector<dag::NotifySpec> ReadNotify(TomlReader& reader, const toml::node& node,
                                        const std::string& path);

}  // namespace kiln::config::internal
