#include "plugins/collect.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <string>

#include "common/paths.h"
#include "common/sha256.h"
#include "plugins/copy.h"
#include "plugins/fd.h"

namespace kiln::plugins {

namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// A declared path: the folder it is read beneath and the rest, or why it may not be read.
struct Place {
  fs::path root;  // empty: an absolute path allowed anywhere
  fs::path rel;
  fs::path absolute;
};

Result<Place> Resolve(const CollectSpec& spec, const std::string& path) {
  if (path.empty()) return Status::Error("is empty");
  if (path.find('\0') != std::string::npos) return Status::Error("holds a NUL character");
  const fs::path pipeline = fs::path(spec.pipeline_dir).lexically_normal();
  const fs::path run = fs::path(spec.run_dir).lexically_normal();
  fs::path p(path);
  if (p.is_relative()) p = pipeline / p;
  p = p.lexically_normal();
  for (const fs::path* root : {&run, &pipeline}) {
    if (auto rel = PathBeneath(p, *root)) return Place{*root, *rel, p};
  }
  if (fs::path(path).is_relative()) {
    return Status::Error("leaves the pipeline's folder " + pipeline.string());
  }
  if (!spec.allow_absolute) {
    return Status::Error(
        "is outside the run folder and the pipeline's folder (absolute paths "
        "elsewhere need allow_absolute_paths = true in [executor] of kiln.toml)");
  }
  return Place{fs::path(), fs::path(), p};
}

std::string OpenError(int err) {
  switch (err) {
    case ENOENT:
      return "does not exist";
    case EXDEV:
      return "leads out of its folder through '..' or a symbolic link";
    case ELOOP:
      return "is a loop of symbolic links";
    case ENOTDIR:
      return "has a part that is not a folder";
    default:
      return std::string("cannot be opened: ") + std::strerror(err);
  }
}

// Opens a declared file for reading: beneath its folder, no link out of it, no blocking on a
// FIFO; a regular file only.
Result<int> Open(const Place& place) {
  constexpr int kFlags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  int fd = -1;
  if (place.root.empty()) {
    fd = ::open(place.absolute.c_str(), kFlags);
  } else {
    Fd root(::open(place.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root.get() < 0) return Status::Error("cannot open its folder: " + OpenError(errno));
    open_how how{};
    how.flags = kFlags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    fd = static_cast<int>(::syscall(SYS_openat2, root.get(), place.rel.c_str(), &how, sizeof how));
  }
  if (fd < 0) return Status::Error(OpenError(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::Error(S_ISDIR(st.st_mode) ? "is a folder, not a file" : "is not a regular file");
  }
  return fd;
}

// Reads `fd` to its end in blocks; false on a read error.
template <typename F>
bool ReadBlocks(int fd, F&& f) {
  std::string buf(1 << 20, '\0');
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    if (!f(std::string_view(buf.data(), static_cast<size_t>(n)))) return true;
  }
}

Result<json> HashFile(const Place& place) {
  auto fd = Open(place);
  if (!fd.ok()) return fd.status();
  Fd file(fd.value());
  Sha256 sha;
  uint64_t bytes = 0;
  const bool ok = ReadBlocks(file.get(), [&](std::string_view block) {
    sha.Update(block);
    bytes += block.size();
    return true;
  });
  if (!ok) return Status::Error(std::string("cannot be read: ") + std::strerror(errno));
  return json{{"path", place.absolute.string()}, {"sha256", sha.Hex()}, {"bytes", bytes}};
}

std::string Quoted(const std::string& text) { return "'" + text + "'"; }

// "a string", "an object", "null".
std::string TypeText(const json& value) {
  if (value.is_null()) return "null";
  const std::string type = value.type_name();
  return (std::string("aeiou").find(type[0]) != std::string::npos ? "an " : "a ") + type;
}

// The whole of a small file (metrics, a report): at most `cap` bytes.
Result<std::string> ReadSmall(const Place& place, size_t cap) {
  auto fd = Open(place);
  if (!fd.ok()) return fd.status();
  Fd file(fd.value());
  std::string text;
  bool too_big = false;
  const bool ok = ReadBlocks(file.get(), [&](std::string_view block) {
    text.append(block);
    too_big = text.size() > cap;
    return !too_big;
  });
  if (!ok) return Status::Error(std::string("cannot be read: ") + std::strerror(errno));
  if (too_big) return Status::Error("is larger than " + std::to_string(cap) + " bytes");
  return text;
}

Result<json> ReadMetrics(const Place& place) {
  auto text = ReadSmall(place, kMaxMetricsBytes);
  if (!text.ok()) {
    if (text.message().starts_with("is larger")) {
      return Status::Error(text.message() + "; expected a flat JSON object of numbers");
    }
    return text.status();
  }
  json j;
  // A name written twice would keep its last value silently: which one the task meant is
  // unknown, so the file is refused.
  std::set<std::string> names;
  std::string twice;
  const json::parser_callback_t unique = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && parsed.is_string() && twice.empty() &&
        !names.insert(parsed.get<std::string>()).second) {
      twice = parsed.get<std::string>();
    }
    return true;
  };
  try {
    j = json::parse(text.value(), unique);
  } catch (const json::out_of_range&) {
    // Valid JSON, but a number past what a double holds (1e999).
    return Status::Error(
        "holds a number too large for a double; expected a flat JSON object of numbers, e.g. "
        "{\"accuracy\": 0.93}");
  } catch (const json::exception&) {
    return Status::Error(
        "is not JSON; expected a flat JSON object of numbers, e.g. "
        "{\"accuracy\": 0.93}");
  }
  if (!twice.empty()) {
    return Status::Error("has the key " + Quoted(twice) +
                         " twice; expected a flat JSON object of numbers, each name once");
  }
  if (!j.is_object()) {
    return Status::Error(std::string(j.is_null() ? "holds JSON null" : "holds a JSON ") +
                         (j.is_null() ? "" : j.type_name()) +
                         "; expected a flat JSON object of numbers, e.g. {\"accuracy\": 0.93}");
  }
  if (j.size() > kMaxMetrics) {
    return Status::Error("has " + std::to_string(j.size()) + " keys; at most " +
                         std::to_string(kMaxMetrics) + " are recorded");
  }
  for (const auto& [key, value] : j.items()) {
    if (key.empty() || key.size() > kMaxMetricNameBytes) {
      return Status::Error("has a key of " + std::to_string(key.size()) + " bytes; names are 1-" +
                           std::to_string(kMaxMetricNameBytes) + " bytes");
    }
    if (!value.is_number()) {
      return Status::Error("key " + Quoted(key) + " is " + TypeText(value) +
                           "; expected a number (a flat JSON object of numbers)");
    }
  }
  return j;
}

// A kind's report: a JSON object; kNotFound when it wrote none.
Result<json> ReadReport(const Place& place) {
  auto text = ReadSmall(place, kMaxReportBytes);
  if (!text.ok()) {
    if (text.message() == "does not exist") {
      return Status::Error(ErrorCode::kNotFound, text.message());
    }
    return text.status();
  }
  json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Error("is not a JSON object");
  return j;
}

// Keeps a copy of an output in the cache store as <store>/<sha256>, unless one is there. Written
// to an unnamed file (O_TMPFILE: nothing is left behind by a process killed meanwhile; a named
// temporary file where the file system has none), checked against the hash, then linked in,
// never replacing a file.
Status KeepInStore(const Place& place, const std::string& store, const std::string& sha256) {
  const fs::path target = fs::path(store) / sha256;
  struct stat st {};
  if (::lstat(target.c_str(), &st) == 0) return Status::Ok();
  auto fd = Open(place);
  if (!fd.ok()) return fd.status();
  Fd source(fd.value());
  std::string tmp;
  Fd out(::open(store.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0444));
  if (out.get() < 0) {
    tmp = (fs::path(store) / (".tmp-" + sha256.substr(0, 16) + "-XXXXXX")).string();
    Fd named(::mkostemp(tmp.data(), O_CLOEXEC));
    if (named.get() < 0) {
      return Status::Error("cannot write into the cache folder " + store + ": " +
                           std::strerror(errno));
    }
    out.Reset(::dup(named.get()));
  }
  auto copied = CopyHashing(source.get(), out.get());
  Status status = Status::Ok();
  if (!copied.ok()) {
    status = copied.status();
  } else if (*copied != sha256) {
    status = Status::Error("changed while it was kept");
  } else if (::fchmod(out.get(), 0444) != 0) {
    status = Status::Error(std::string("cannot be kept: ") + std::strerror(errno));
  } else {
    const std::string from = tmp.empty() ? "/proc/self/fd/" + std::to_string(out.get()) : tmp;
    if (::linkat(AT_FDCWD, from.c_str(), AT_FDCWD, target.c_str(),
                 tmp.empty() ? AT_SYMLINK_FOLLOW : 0) != 0 &&
        errno != EEXIST) {
      status = Status::Error(std::string("cannot be kept: ") + std::strerror(errno));
    }
  }
  if (!tmp.empty()) ::unlink(tmp.c_str());
  return status;
}

}  // namespace

Result<std::string> DeclaredPath(const CollectSpec& spec, const std::string& path) {
  auto place = Resolve(spec, path);
  if (!place.ok()) return place.status();
  return place->absolute.string();
}

Result<FileHash> HashDeclared(const CollectSpec& spec, const std::string& path) {
  auto place = Resolve(spec, path);
  if (!place.ok()) return place.status();
  auto hashed = HashFile(place.value());
  if (!hashed.ok()) return hashed.status();
  return FileHash{(*hashed)["path"].get<std::string>(), (*hashed)["sha256"].get<std::string>(),
                  (*hashed)["bytes"].get<uint64_t>()};
}

std::string CollectSpecJson(const CollectSpec& spec) {
  json j = {{"inputs", spec.inputs},
            {"outputs", spec.outputs},
            {"metrics", spec.metrics},
            {"report", spec.report},
            {"pipeline_dir", spec.pipeline_dir},
            {"run_dir", spec.run_dir},
            {"allow_absolute", spec.allow_absolute}};
  if (!spec.cache_report.empty()) j["cache_report"] = spec.cache_report;
  if (!spec.cache_store.empty()) j["cache_store"] = spec.cache_store;
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<CollectSpec> ParseCollectSpec(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Error("the collect spec is not a JSON object");
  try {
    CollectSpec spec;
    spec.inputs = j.value("inputs", std::vector<std::string>{});
    spec.outputs = j.value("outputs", std::vector<std::string>{});
    spec.metrics = j.value("metrics", std::string());
    spec.report = j.value("report", std::string());
    spec.pipeline_dir = j.at("pipeline_dir").get<std::string>();
    spec.run_dir = j.value("run_dir", std::string());
    spec.allow_absolute = j.value("allow_absolute", false);
    spec.cache_report = j.value("cache_report", std::string());
    spec.cache_store = j.value("cache_store", std::string());
    if (!fs::path(spec.pipeline_dir).is_absolute()) {
      return Status::Error("the collect spec's pipeline_dir is not absolute");
    }
    return spec;
  } catch (const json::exception& e) {
    return Status::Error(std::string("the collect spec cannot be read: ") + e.what());
  }
}

Result<std::string> CollectResults(const CollectSpec& spec) {
  std::string problems;
  auto problem = [&](const std::string& what, const std::string& path, const fs::path* absolute,
                     const std::string& why) {
    if (!problems.empty()) problems += '\n';
    problems += what + " " + Quoted(path);
    if (absolute != nullptr && absolute->string() != path)
      problems += " (" + absolute->string() + ")";
    problems += " " + why;
  };
  json results = json::object();
  for (const auto* list : {&spec.inputs, &spec.outputs}) {
    const std::string what = list == &spec.inputs ? "input" : "output";
    json files = json::array();
    for (const std::string& path : *list) {
      auto place = Resolve(spec, path);
      if (!place.ok()) {
        problem(what, path, nullptr, place.message());
        continue;
      }
      auto hashed = HashFile(place.value());
      if (!hashed.ok()) {
        problem(what, path, &place->absolute, hashed.message());
        continue;
      }
      files.push_back(std::move(hashed).value());
    }
    results[what + "s"] = std::move(files);
  }
  if (!spec.metrics.empty()) {
    auto place = Resolve(spec, spec.metrics);
    if (!place.ok()) {
      problem("metrics file", spec.metrics, nullptr, place.message());
    } else if (auto metrics = ReadMetrics(place.value()); !metrics.ok()) {
      problem("metrics file", spec.metrics, &place->absolute, metrics.message());
    } else {
      results["metrics"] = std::move(metrics).value();
    }
  }
  if (!problems.empty()) return Status::Error(problems);
  if (!spec.cache_store.empty()) {
    std::string errors;
    for (const auto& file : results["outputs"]) {
      auto place = Resolve(spec, file["path"].get<std::string>());
      Status kept = place.ok() ? KeepInStore(place.value(), spec.cache_store,
                                             file["sha256"].get<std::string>())
                               : place.status();
      if (!kept.ok()) {
        errors += (errors.empty() ? "" : "; ") + Quoted(file["path"].get<std::string>()) + " " +
                  kept.message();
      }
    }
    if (!errors.empty()) results["cache_error"] = "outputs not kept for the cache: " + errors;
  }
  if (!spec.cache_report.empty()) {
    auto place = Resolve(spec, spec.cache_report);
    auto report = place.ok() ? ReadReport(place.value()) : Result<json>(place.status());
    if (report.ok()) results["cache"] = std::move(report).value();
  }
  if (!spec.report.empty()) {
    auto place = Resolve(spec, spec.report);
    auto report = place.ok() ? ReadReport(place.value()) : Result<json>(place.status());
    if (report.ok()) {
      results["report"] = std::move(report).value();
    } else if (report.status().code() != ErrorCode::kNotFound) {
      results["report_error"] = "report " + Quoted(spec.report) + " " + report.message();
    }
  }
  return results.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<std::map<std::string, double>> ReadMetricsFile(const std::string& path) {
  Place place{fs::path(), fs::path(), fs::path(path)};
  auto metrics = ReadMetrics(place);
  if (!metrics.ok()) return metrics.status();
  std::map<std::string, double> out;
  for (const auto& [key, value] : metrics->items()) out[key] = value.get<double>();
  return out;
}

int RunCollect(std::string_view spec_json, std::ostream& out) {
  auto spec = ParseCollectSpec(spec_json);
  if (!spec.ok()) {
    out << "kiln task collect: " << spec.message() << '\n';
    return 2;
  }
  // After a kind's skip code (executor/collector.h): its decision only, no files it owed.
  if (const char* only = std::getenv("KILN_COLLECT_DECISION_ONLY"); only && *only == '1') {
    spec->inputs.clear();
    spec->outputs.clear();
    spec->cache_store.clear();
    spec->cache_report.clear();
  }
  auto results = CollectResults(spec.value());
  if (!results.ok()) {
    out << results.message() << '\n';
    return 1;
  }
  out << results.value() << '\n';
  return 0;
}

}  // namespace kiln::plugins
