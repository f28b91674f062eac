#include "config/daemon_config.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>

#include "config/toml_reader.h"
#include "dag/template.h"

namespace kiln::config {

namespace fs = std::filesystem;
using internal::LocOf;
using internal::TomlReader;

namespace {

constexpr std::array<std::string_view, 13> kTopKeys = {
    "auth",       "daemon", "data_dir",  "database",  "executor", "notify", "pipelines",
    "public_url", "pools",  "retention", "scheduler", "secrets",  "server"};
constexpr std::array<std::string_view, 2> kSecretKeys = {"env", "file"};
constexpr std::array<std::string_view, 2> kDaemonKeys = {"lease", "on_stop"};
constexpr std::array<std::string_view, 2> kStopModes = {"cancel", "leave"};
constexpr std::array<std::string_view, 5> kRetentionKeys = {"batch", "events", "interval",
                                                            "min_runs", "runs"};
constexpr std::array<std::string_view, 2> kSchedulerKeys = {"catchup_cap", "clock_offset"};
constexpr std::array<std::string_view, 1> kAuthKeys = {"tokens"};
constexpr std::array<std::string_view, 3> kTokenKeys = {"name", "role", "sha256"};
constexpr std::array<std::string_view, 3> kRoles = {"admin", "operator", "viewer"};
constexpr std::array<std::string_view, 1> kServerKeys = {"listen"};
constexpr std::array<std::string_view, 2> kDatabaseKeys = {"pg_bin_dir", "url"};
constexpr std::array<std::string_view, 8> kExecutorKeys = {"allow_absolute_paths",
                                                           "kill_grace",
                                                           "log_cap",
                                                           "max_parallel_tasks",
                                                           "mode",
                                                           "run_as",
                                                           "run_uids",
                                                           "worker_pools"};
// Per-run user ids: above the system's and ordinary users' ids, below 2^31 - 1 (which some
// tools read as a signed number), at most 2^24 of them.
constexpr uint64_t kMinRunUid = 1000;
constexpr uint64_t kMaxRunUid = 2147483646;
constexpr uint64_t kMaxRunUids = 1u << 24;

// "FIRST-LAST" -> the range; "" -> none; nullopt when malformed.
std::optional<UidRange> ParseUidRange(std::string_view text) {
  if (text.empty()) return UidRange{};
  const size_t dash = text.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view digits) -> std::optional<uint64_t> {
    if (digits.empty() || digits.size() > 10) return std::nullopt;
    uint64_t n = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    return n;
  };
  auto first = number(text.substr(0, dash));
  auto last = number(text.substr(dash + 1));
  if (!first || !last || *first < kMinRunUid || *last > kMaxRunUid || *first > *last ||
      *last - *first + 1 > kMaxRunUids) {
    return std::nullopt;
  }
  return UidRange{static_cast<uint32_t>(*first), static_cast<uint32_t>(*last - *first + 1)};
}

constexpr std::pair<std::string_view, uint64_t> kSizeUnits[] = {
    {"B", 1},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
    {"KB", 1000},
    {"MB", 1000 * 1000},
    {"GB", 1000 * 1000 * 1000},
    {"TB", 1000ull * 1000 * 1000 * 1000},
};

// Reads one file; `base` is the folder relative paths are resolved against.
class DaemonConfigReader {
 public:
  DaemonConfigReader(TomlReader& reader, fs::path base) : r_(reader), base_(std::move(base)) {}

  void Read(const toml::table& doc, DaemonConfig& config);

 private:
  // The table `name` of the document, with its keys checked; nullptr when absent or not a table.
  const toml::table* Section(const toml::table& doc, std::string_view name,
                             std::span<const std::string_view> keys);
  // A path resolved against base_. "" is the empty path (= none / automatic) when `allow_empty`.
  std::optional<fs::path> Path(const toml::node& node, const std::string& field,
                               bool allow_empty = true, std::string_view what = "a folder");
  std::optional<std::string> Listen(const toml::node& node, const std::string& field);
  std::optional<uint64_t> Size(const toml::node& node, const std::string& field);
  void ReadExecutor(const toml::table& table, DaemonConfig& config);
  void ReadPools(const toml::table& table, DaemonConfig& config);
  void ReadScheduler(const toml::table& table, DaemonConfig& config);
  void ReadDaemon(const toml::table& table, DaemonConfig& config);
  void ReadRetention(const toml::table& table, DaemonConfig& config);
  std::optional<int> IntAtLeast(const toml::node& node, const std::string& field, int min);
  std::optional<int> IntAtLeast(const toml::table& table, std::string_view key,
                                const std::string& field, int min);
  void ReadTokens(const toml::node& node, DaemonConfig& config);
  void ReadSecrets(const toml::table& table, DaemonConfig& config);
  std::optional<AuthToken> ReadToken(const toml::table& table, const std::string& path);

  TomlReader& r_;
  fs::path base_;
};

const toml::table* DaemonConfigReader::Section(const toml::table& doc, std::string_view name,
                                               std::span<const std::string_view> keys) {
  const toml::node* node = doc.get(name);
  if (node == nullptr) return nullptr;
  const toml::table* table = r_.Table(*node, std::string(name));
  if (table != nullptr && !keys.empty()) r_.CheckKeys(*table, name, keys);
  return table;
}

std::optional<fs::path> DaemonConfigReader::Path(const toml::node& node, const std::string& field,
                                                 bool allow_empty, std::string_view what) {
  std::optional<std::string> text = r_.String(node, field);
  if (!text) return std::nullopt;
  if (text->empty()) {
    if (allow_empty) return fs::path();
    r_.Error(LocOf(node), field, "empty path; expected " + std::string(what));
    return std::nullopt;
  }
  return (base_ / *text).lexically_normal();
}

std::optional<std::string> DaemonConfigReader::Listen(const toml::node& node,
                                                      const std::string& field) {
  std::optional<std::string> text = r_.String(node, field);
  if (!text) return std::nullopt;
  const size_t colon = text->rfind(':');
  const std::string port = colon == std::string::npos ? "" : text->substr(colon + 1);
  const bool port_ok =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(),
                  [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) &&
      std::stoi(port) <= 65535;
  if (colon == 0 || colon == std::string::npos || !port_ok) {
    r_.Error(LocOf(node), field,
             "invalid listen address '" + *text +
                 "'; expected HOST:PORT with a port from 0 to 65535, e.g. \"127.0.0.1:8080\"");
    return std::nullopt;
  }
  return text;
}

std::optional<uint64_t> DaemonConfigReader::Size(const toml::node& node, const std::string& field) {
  uint64_t size = 0;
  if (const auto* i = node.as_integer()) {
    if (i->get() < 0) {
      r_.Error(LocOf(node), field, "must not be negative, got " + std::to_string(i->get()));
      return std::nullopt;
    }
    size = static_cast<uint64_t>(i->get());
  } else if (const auto* s = node.as_string()) {
    Result<uint64_t> parsed = ParseByteSize(s->get());
    if (!parsed.ok()) {
      r_.Error(LocOf(node), field, parsed.message());
      return std::nullopt;
    }
    size = *parsed;
  } else {
    r_.TypeError(node, field, "a number of bytes or a size string such as \"64MiB\"");
    return std::nullopt;
  }
  if (size == 0) {
    r_.Error(LocOf(node), field, "must be at least 1 byte");
    return std::nullopt;
  }
  return size;
}

void DaemonConfigReader::ReadExecutor(const toml::table& table, DaemonConfig& config) {
  if (auto n = IntAtLeast(table, "max_parallel_tasks", "executor.max_parallel_tasks", 1)) {
    config.max_parallel_tasks = *n;
  }
  if (const toml::node* node = table.get("log_cap")) {
    if (auto size = Size(*node, "executor.log_cap")) config.log_cap_bytes = *size;
  }
  if (const toml::node* node = table.get("kill_grace")) {
    if (auto grace = r_.DurationValue(*node, "executor.kill_grace")) config.kill_grace = *grace;
  }
  if (const toml::node* node = table.get("allow_absolute_paths")) {
    if (auto allow = r_.Bool(*node, "executor.allow_absolute_paths")) {
      config.allow_absolute_paths = *allow;
    }
  }
  if (const toml::node* node = table.get("mode")) {
    if (auto mode = r_.String(*node, "executor.mode")) {
      if (*mode == "local" || *mode == "workers" || *mode == "both") {
        config.executor_mode = *mode;
      } else {
        r_.Error(LocOf(*node), "executor.mode",
                 "unknown mode \"" + *mode + "\"; expected \"local\", \"workers\" or \"both\"");
      }
    }
  }
  if (const toml::node* node = table.get("worker_pools")) {
    if (auto pools = r_.Strings(*node, "executor.worker_pools")) {
      for (const std::string& pool : *pools) {
        if (pool.empty()) {
          r_.Error(LocOf(*node), "executor.worker_pools", "a pool name is empty");
          break;
        }
        if (std::count(pools->begin(), pools->end(), pool) > 1) {
          r_.Error(LocOf(*node), "executor.worker_pools", "pool '" + pool + "' is listed twice");
          break;
        }
      }
      config.worker_pools = *pools;
      const bool typed = pools->size() == node->as_array()->size();  // else already refused
      if (config.executor_mode != "both" && typed && !pools->empty()) {
        r_.Error(LocOf(*node), "executor.worker_pools",
                 "used only with mode = \"both\" (mode is \"" + config.executor_mode + "\": " +
                     (config.executor_mode == "workers" ? "every pool runs on workers"
                                                        : "every pool runs here") +
                     "); remove it or set mode = \"both\"");
      }
    }
  }
  if (config.executor_mode == "both" && config.worker_pools.empty()) {
    const toml::node* node = table.get("mode");
    r_.Error(node ? LocOf(*node) : dag::SourceLoc{}, "executor.worker_pools",
             "mode \"both\" needs the pools that run on workers, e.g. worker_pools = [\"gpu\"]");
  }
  if (const toml::node* node = table.get("run_as")) {
    if (auto name = r_.String(*node, "executor.run_as")) {
      const bool plain =
          !name->empty() && name->size() <= 64 && (*name)[0] != '-' &&
          std::all_of(name->begin(), name->end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
          });
      if (plain) {
        config.run_as = *name;
      } else {
        r_.Error(LocOf(*node), "executor.run_as",
                 "'" + *name +
                     "' is not a user name: use 1-64 of A-Z a-z 0-9 _ . - (not starting with -)");
      }
    }
  }
  if (const toml::node* node = table.get("run_uids")) {
    if (auto text = r_.String(*node, "executor.run_uids")) {
      if (auto range = ParseUidRange(*text)) {
        config.run_uids = *range;
      } else {
        r_.Error(LocOf(*node), "executor.run_uids",
                 "invalid range \"" + *text +
                     "\"; expected \"FIRST-LAST\" with 1000 <= FIRST <= LAST <= 2147483646 and "
                     "at most 16777216 ids, e.g. \"1879048192-1895825407\", or \"\" for none");
      }
    }
  }
}

void DaemonConfigReader::ReadScheduler(const toml::table& table, DaemonConfig& config) {
  if (auto n = IntAtLeast(table, "catchup_cap", "scheduler.catchup_cap", 1)) {
    config.catchup_cap = *n;
  }
  if (const toml::node* node = table.get("clock_offset")) {
    // A duration with an optional leading '-'.
    const auto* text = node->as_string();
    if (text && text->get().starts_with("-")) {
      Result<Duration> d = ParseDuration(std::string_view(text->get()).substr(1));
      if (d.ok()) {
        config.clock_offset = -*d;
      } else {
        // Quoted as written, sign included.
        std::string message = d.message();
        const std::string part = "\"" + text->get().substr(1) + "\"";
        if (size_t at = message.find(part); at != std::string::npos) {
          message.replace(at, part.size(), "\"" + text->get() + "\"");
        }
        r_.Error(LocOf(*node), "scheduler.clock_offset", message);
      }
    } else if (auto d = r_.DurationValue(*node, "scheduler.clock_offset")) {
      config.clock_offset = *d;
    }
  }
}

std::optional<int> DaemonConfigReader::IntAtLeast(const toml::table& table, std::string_view key,
                                                  const std::string& field, int min) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  return IntAtLeast(*node, field, min);
}

std::optional<int> DaemonConfigReader::IntAtLeast(const toml::node& node, const std::string& field,
                                                  int min) {
  std::optional<int64_t> n = r_.Integer(node, field);
  if (!n) return std::nullopt;
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  if (*n < min || *n > kMax) {
    r_.Error(LocOf(node), field,
             "must be a whole number from " + std::to_string(min) + " to " + std::to_string(kMax) +
                 ", got " + std::to_string(*n));
    return std::nullopt;
  }
  return static_cast<int>(*n);
}

void DaemonConfigReader::ReadDaemon(const toml::table& table, DaemonConfig& config) {
  if (const toml::node* node = table.get("lease")) {
    if (auto d = r_.DurationValue(*node, "daemon.lease")) {
      if (*d < std::chrono::seconds(1)) {
        r_.Error(LocOf(*node), "daemon.lease",
                 "must be at least 1s (it is renewed every third of it)");
      } else {
        config.lease = *d;
      }
    }
  }
  if (const toml::node* node = table.get("on_stop")) {
    if (auto mode = r_.String(*node, "daemon.on_stop")) {
      if (std::find(kStopModes.begin(), kStopModes.end(), *mode) == kStopModes.end()) {
        r_.Error(LocOf(*node), "daemon.on_stop",
                 "unknown mode '" + *mode +
                     "'; expected \"leave\" (running tasks go on and the "
                     "next start adopts them) or \"cancel\" (they are stopped)");
      } else {
        config.on_stop = *mode;
      }
    }
  }
}

void DaemonConfigReader::ReadRetention(const toml::table& table, DaemonConfig& config) {
  RetentionConfig& r = config.retention;
  if (const toml::node* node = table.get("runs")) {
    if (auto d = r_.DurationValue(*node, "retention.runs")) r.runs = *d;
  }
  if (const toml::node* node = table.get("events")) {
    if (auto d = r_.DurationValue(*node, "retention.events")) r.events = *d;
  }
  if (const toml::node* node = table.get("interval")) {
    if (auto d = r_.DurationValue(*node, "retention.interval")) {
      if (*d < std::chrono::seconds(1)) {
        r_.Error(LocOf(*node), "retention.interval", "must be at least 1s");
      } else {
        r.interval = *d;
      }
    }
  }
  if (auto n = IntAtLeast(table, "min_runs", "retention.min_runs", 0)) r.min_runs = *n;
  if (auto n = IntAtLeast(table, "batch", "retention.batch", 1)) r.batch = *n;
}

void DaemonConfigReader::ReadPools(const toml::table& table, DaemonConfig& config) {
  for (const auto& [key, node] : table) {
    const std::string name(key.str());
    const std::string field = "pools." + name;
    if (std::optional<int> size = IntAtLeast(node, field, 1)) config.pools[name] = *size;
  }
}

void DaemonConfigReader::ReadSecrets(const toml::table& table, DaemonConfig& config) {
  for (const auto& [key, node] : table) {
    const std::string name(key.str());
    const std::string field = "secrets." + name;
    if (!IsSecretName(name)) {
      r_.Error(
          LocOf(key), field,
          "secret name '" + name + "' must be 1-64 of A-Z a-z 0-9 _, not starting with a digit");
      continue;
    }
    const toml::table* source = r_.Table(node, field);
    if (source == nullptr) continue;
    r_.CheckKeys(*source, field, kSecretKeys);
    const toml::node* file = source->get("file");
    const toml::node* env = source->get("env");
    if ((file == nullptr) == (env == nullptr)) {
      r_.Error(
          LocOf(node), field,
          "give exactly one of file = \"/path\" or env = \"VARIABLE\" (where its value is read "
          "from)");
      continue;
    }
    SecretRef ref;
    if (file != nullptr) {
      auto path = Path(*file, field + ".file", /*allow_empty=*/false, "a file");
      if (!path) continue;
      ref.where = path->string();
    } else {
      auto var = r_.String(*env, field + ".env");
      if (!var) continue;
      if (!IsSecretName(*var)) {
        r_.Error(LocOf(*env), field + ".env",
                 "'" + *var + "' is not an environment variable name (A-Z a-z 0-9 _)");
        continue;
      }
      ref.from = SecretRef::From::kEnv;
      ref.where = *var;
    }
    config.secrets.emplace(name, std::move(ref));
  }
}

bool IsTokenName(std::string_view name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '@' ||
           c == '-';
  });
}

std::optional<AuthToken> DaemonConfigReader::ReadToken(const toml::table& table,
                                                       const std::string& path) {
  r_.CheckKeys(table, path, kTokenKeys);
  AuthToken token;
  bool ok = true;
  for (std::string_view key : kTokenKeys) {
    const std::string field = path + "." + std::string(key);
    const toml::node* node = table.get(key);
    if (node == nullptr) {
      r_.Error(LocOf(table), field, "missing; every token needs name, role and sha256");
      ok = false;
      continue;
    }
    std::optional<std::string> text = r_.String(*node, field);
    if (!text) {
      ok = false;
      continue;
    }
    std::string message;
    if (key == "name") {
      token.name = *text;
      if (!IsTokenName(*text))
        message = "token name '" + *text + "' must be 1-64 of A-Z a-z 0-9 _ . @ -";
    } else if (key == "role") {
      token.role = *text;
      if (std::find(kRoles.begin(), kRoles.end(), *text) == kRoles.end()) {
        message = "unknown role '" + *text + "'" + internal::SuggestAccepted(*text, kRoles);
      }
    } else {
      token.sha256 = *text;
      if (!IsSha256Hex(*text)) {
        message =
            "expected the token's SHA-256 as 64 lowercase hex digits (kiln token new "
            "prints it), got " +
            std::to_string(text->size()) + " characters";
      }
    }
    if (!message.empty()) {
      r_.Error(LocOf(*node), field, message);
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return token;
}

void DaemonConfigReader::ReadTokens(const toml::node& node, DaemonConfig& config) {
  const toml::array* tokens = node.as_array();
  if (tokens == nullptr) {
    r_.TypeError(node, "auth.tokens", "an array of tables ([[auth.tokens]])");
    return;
  }
  for (size_t i = 0; i < tokens->size(); ++i) {
    const std::string path = "auth.tokens[" + std::to_string(i) + "]";
    const toml::table* table = r_.Table((*tokens)[i], path);
    if (table == nullptr) continue;
    std::optional<AuthToken> token = ReadToken(*table, path);
    if (!token) continue;
    for (const AuthToken& other : config.tokens) {
      if (other.name == token->name) {
        r_.Error(LocOf(*table->get("name")), path + ".name",
                 "token name '" + token->name + "' is used twice");
        token.reset();
        break;
      }
      if (other.sha256 == token->sha256) {
        r_.Error(LocOf(*table->get("sha256")), path + ".sha256",
                 "the same token is declared for '" + other.name + "' and '" + token->name + "'");
        token.reset();
        break;
      }
    }
    if (token) config.tokens.push_back(std::move(*token));
  }
}

void DaemonConfigReader::Read(const toml::table& doc, DaemonConfig& config) {
  r_.CheckKeys(doc, "", kTopKeys);
  if (const toml::node* node = doc.get("data_dir")) {
    if (auto path = Path(*node, "data_dir", /*allow_empty=*/false)) config.data_dir = *path;
  }
  if (const toml::node* node = doc.get("pipelines")) {
    if (auto path = Path(*node, "pipelines")) config.pipelines_dir = *path;
  }
  if (const toml::table* server = Section(doc, "server", kServerKeys)) {
    if (const toml::node* node = server->get("listen")) {
      if (auto listen = Listen(*node, "server.listen")) config.listen = *listen;
    }
  }
  if (const toml::table* database = Section(doc, "database", kDatabaseKeys)) {
    if (const toml::node* node = database->get("url")) {
      if (auto url = r_.String(*node, "database.url")) config.database_url = *url;
    }
    if (const toml::node* node = database->get("pg_bin_dir")) {
      if (auto path = Path(*node, "database.pg_bin_dir")) config.pg_bin_dir = *path;
    }
  }
  if (const toml::table* executor = Section(doc, "executor", kExecutorKeys)) {
    ReadExecutor(*executor, config);
  }
  if (const toml::table* pools = Section(doc, "pools", {})) ReadPools(*pools, config);
  if (const toml::table* scheduler = Section(doc, "scheduler", kSchedulerKeys)) {
    ReadScheduler(*scheduler, config);
  }
  if (const toml::table* daemon = Section(doc, "daemon", kDaemonKeys)) {
    ReadDaemon(*daemon, config);
  }
  if (const toml::table* retention = Section(doc, "retention", kRetentionKeys)) {
    ReadRetention(*retention, config);
  }
  if (const toml::table* auth = Section(doc, "auth", kAuthKeys)) {
    if (const toml::node* node = auth->get("tokens")) ReadTokens(*node, config);
  }
  if (const toml::table* secrets = Section(doc, "secrets", {})) ReadSecrets(*secrets, config);
  if (const toml::node* node = doc.get("notify")) {
    config.notify = internal::ReadNotify(r_, *node, "notify");
    for (size_t i = 0; i < config.notify.size(); ++i) {
      for (std::string_view name : dag::SecretNamesIn(config.notify[i].webhook)) {
        if (!config.secrets.contains(name)) {
          r_.Error(config.notify[i].webhook_loc, "notify[" + std::to_string(i) + "].webhook",
                   "unknown secret '" + std::string(name) + "'; declare it under [secrets]");
        }
      }
    }
  }
  if (const toml::node* node = doc.get("public_url")) {
    if (auto url = r_.String(*node, "public_url")) {
      if (!url->empty() && !url->starts_with("http://") && !url->starts_with("https://")) {
        r_.Error(LocOf(*node), "public_url", "'" + *url + "' is not an http:// or https:// URL");
      } else {
        config.public_url = *url;
      }
    }
  }
  config.pools.emplace("default", config.max_parallel_tasks);
}

fs::path FolderOf(const fs::path& file) {
  std::error_code ec;
  fs::path absolute = fs::absolute(file, ec);
  return (ec ? file : absolute).parent_path();
}

DaemonConfigResult Parse(std::string_view text, const fs::path& file) {
  const std::string shown = file.string();
  DaemonConfigResult result;
  result.config = DefaultDaemonConfig();
  if (auto over = internal::CheckTomlLimits(text, shown, internal::kConfigLimits)) {
    result.diagnostics.push_back(std::move(*over));
    return result;
  }
  toml::table doc;
  try {
    doc = toml::parse(text, std::string_view(shown));
  } catch (const toml::parse_error& error) {
    result.diagnostics.push_back(internal::SyntaxDiagnostic(shown, error, text));
    return result;
  }
  result.config.pools.clear();
  TomlReader reader(shown);
  DaemonConfigReader(reader, FolderOf(file)).Read(doc, result.config);
  result.diagnostics = std::move(reader.diagnostics());
  internal::SortByPosition(result.diagnostics);
  return result;
}

}  // namespace

Result<uint64_t> ParseByteSize(std::string_view text) {
  auto error = [&] {
    return Status::Error("invalid size \"" + std::string(text) +
                         "\"; expected a number of bytes with an optional unit B, KiB, MiB, GiB, "
                         "TiB, KB, MB, GB or TB, e.g. \"64MiB\"");
  };
  auto too_large = [&] {
    return Status::Error("invalid size \"" + std::string(text) +
                         "\": larger than 16 EiB, the most a size can hold");
  };
  size_t digits = 0;
  uint64_t number = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) {
    if (number > (std::numeric_limits<uint64_t>::max() - 9) / 10) return too_large();
    number = number * 10 + static_cast<uint64_t>(text[digits] - '0');
    ++digits;
  }
  if (digits == 0) return error();
  const std::string_view unit = text.substr(digits);
  if (unit.empty()) return number;
  for (const auto& [name, factor] : kSizeUnits) {
    if (unit != name) continue;
    if (number > std::numeric_limits<uint64_t>::max() / factor) return too_large();
    return number * factor;
  }
  return error();
}

bool IsSha256Hex(std::string_view hex) {
  return hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

DaemonConfig DefaultDaemonConfig() {
  DaemonConfig config;
  config.pools["default"] = config.max_parallel_tasks;
  return config;
}

DaemonConfigResult ParseDaemonConfig(std::string_view text, const fs::path& file) {
  try {
    return Parse(text, file);
  } catch (const std::exception& e) {
    DaemonConfigResult result{DefaultDaemonConfig(), {}};
    result.diagnostics.push_back({file.string(), {}, "", std::string("cannot load: ") + e.what()});
    return result;
  }
}

DaemonConfigResult LoadDaemonConfig(const fs::path& file) {
  Result<std::string> text = internal::ReadFileText(file, internal::kConfigLimits.max_bytes);
  if (!text.ok()) return {DefaultDaemonConfig(), {{file.string(), {}, "", text.message()}}};
  return ParseDaemonConfig(*text, file);
}

}  // namespace kiln::config
