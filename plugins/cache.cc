#include "plugins/cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "plugins/copy.h"
#include "plugins/fd.h"
#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

bool IsHash(const std::string& text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// Copies <store>/<sha256> to `dest` through a temporary file beside it, checking the content
// against the hash and the size; the file appears whole or not at all.
Status PutInPlace(const std::string& store, const CacheCandidate::Output& output,
                  const fs::path& dest) {
  if (!IsHash(output.sha256)) return Status::Error("has no content hash");
  Fd source(::open((fs::path(store) / output.sha256).c_str(),
                   O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (source.get() < 0) {
    return Status::Error(errno == ENOENT ? "is no longer kept"
                                         : std::string("cannot be read: ") + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(source.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) != output.bytes) {
    return Status::Error("is not the file that was kept");
  }
  std::error_code ec;
  fs::create_directories(dest.parent_path(), ec);
  std::string tmp = (dest.parent_path() / ("." + dest.filename().string() + ".kiln-XXXXXX"));
  Fd out(::mkostemp(tmp.data(), O_CLOEXEC));
  if (out.get() < 0) {
    return Status::Error("cannot be written beside " + dest.string() + ": " + std::strerror(errno));
  }
  auto copied = CopyHashing(source.get(), out.get());
  Status status = Status::Ok();
  if (!copied.ok()) {
    status = copied.status();
  } else if (*copied != output.sha256) {
    status = Status::Error("no longer has the content that was kept");
  } else if (::fchmod(out.get(), 0644) != 0 || ::rename(tmp.c_str(), dest.c_str()) != 0) {
    status = Status::Error("cannot be put in place: " + std::string(std::strerror(errno)));
  }
  if (!status.ok()) ::unlink(tmp.c_str());
  return status;
}

// The report the collector keeps as the attempt's "cache": written like a kind's report
// (beneath the run folder, following no link), at the path the spec names.
Status WriteHit(const CacheSpec& spec, const CacheCandidate& c) {
  if (spec.report.empty()) return Status::Ok();
  TaskContext ctx;
  ctx.run_dir = spec.files.run_dir;
  ctx.task_id = fs::path(spec.report).parent_path().filename().string();
  if ((ctx.run_dir / ".kiln" / ctx.task_id / "cache.json").lexically_normal() !=
      fs::path(spec.report).lexically_normal()) {
    return Status::Error("the cache report " + spec.report + " is not in the run folder");
  }
  const json hit = {{"hit", {{"run", c.run}, {"task", c.task}, {"attempt", c.attempt}}}};
  return WriteReport(ctx, "cache.json", hit.dump());
}

// {"sha256": "<64 hex>", "bytes": N}; throws json::exception otherwise.
CacheCandidate::Output OutputOf(const json& o) {
  const json& bytes = o.at("bytes");
  std::string sha = o.at("sha256").get<std::string>();
  if (!bytes.is_number_unsigned() || !IsHash(sha)) {
    throw json::type_error::create(302, "not an output's hash and size", &o);
  }
  return {std::move(sha), bytes.get<uint64_t>()};
}

}  // namespace

std::string CacheSpecJson(const CacheSpec& spec) {
  json candidates = json::array();
  for (const auto& c : spec.candidates) {
    json outputs = json::array();
    for (const auto& o : c.outputs) outputs.push_back({{"sha256", o.sha256}, {"bytes", o.bytes}});
    candidates.push_back({{"run", c.run},
                          {"task", c.task},
                          {"attempt", c.attempt},
                          {"inputs", c.inputs},
                          {"outputs", std::move(outputs)}});
  }
  json j = {{"files", json::parse(CollectSpecJson(spec.files))},
            {"report", spec.report},
            {"candidates", std::move(candidates)},
            {"argv", spec.argv}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<CacheSpec> ParseCacheSpec(std::string_view text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Error("the cache spec is not a JSON object");
  try {
    CacheSpec spec;
    auto files = ParseCollectSpec(j.at("files").dump());
    if (!files.ok()) return files.status();
    spec.files = std::move(files).value();
    spec.report = j.value("report", std::string());
    spec.argv = j.at("argv").get<std::vector<std::string>>();
    if (spec.argv.empty()) return Status::Error("the cache spec has no program");
    for (const auto& c : j.value("candidates", json::array())) {
      CacheCandidate candidate;
      candidate.run = c.at("run").get<int64_t>();
      candidate.task = c.at("task").get<std::string>();
      candidate.attempt = c.at("attempt").get<int>();
      candidate.inputs = c.at("inputs").get<std::vector<std::string>>();
      for (const auto& o : c.at("outputs")) {
        candidate.outputs.push_back(OutputOf(o));
      }
      spec.candidates.push_back(std::move(candidate));
    }
    return spec;
  } catch (const json::exception& e) {
    return Status::Error(std::string("the cache spec cannot be read: ") + e.what());
  }
}

std::vector<CacheCandidate> CandidatesFromResults(std::string_view text) {
  std::vector<CacheCandidate> out;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const auto& row : j) {
    try {
      CacheCandidate c;
      c.run = row.at("run").get<int64_t>();
      c.task = row.at("task").get<std::string>();
      c.attempt = row.at("attempt").get<int>();
      const json& results = row.at("results");
      for (const auto& in : results.at("inputs")) c.inputs.push_back(in.at("sha256"));
      for (const auto& o : results.at("outputs")) c.outputs.push_back(OutputOf(o));
      out.push_back(std::move(c));
    } catch (const json::exception&) {
      // Not the shape the collector writes: not a candidate.
    }
  }
  return out;
}

Result<CacheCandidate> Restore(const CacheSpec& spec, std::ostream& out) {
  if (spec.candidates.empty()) {
    return Status::Error(
        "no earlier success of this task with the same command, environment "
        "and params");
  }
  std::vector<std::string> inputs;
  for (const std::string& path : spec.files.inputs) {
    auto hashed = HashDeclared(spec.files, path);
    if (!hashed.ok()) return Status::Error("input '" + path + "' " + hashed.message());
    inputs.push_back(hashed->sha256);
  }
  std::vector<fs::path> dests;
  for (const std::string& path : spec.files.outputs) {
    auto dest = DeclaredPath(spec.files, path);
    if (!dest.ok()) return Status::Error("output '" + path + "' " + dest.message());
    dests.emplace_back(dest.value());
  }
  std::string why = "no earlier success read these inputs";
  for (const CacheCandidate& c : spec.candidates) {
    if (c.inputs != inputs || c.outputs.size() != dests.size()) continue;
    Status put = Status::Ok();
    for (size_t i = 0; i < dests.size() && put.ok(); ++i) {
      put = PutInPlace(spec.files.cache_store, c.outputs[i], dests[i]);
      if (!put.ok()) {
        put = Status::Error("output '" + spec.files.outputs[i] + "' of run " +
                            std::to_string(c.run) + " " + put.message());
      }
    }
    if (!put.ok()) {
      why = put.message();
      out << "kiln cache: " << why << '\n';
      continue;
    }
    if (Status s = WriteHit(spec, c); !s.ok()) return s;
    return c;
  }
  return Status::Error(why);
}

int RunCache(std::string_view spec_json, std::ostream& out) {
  auto spec = ParseCacheSpec(spec_json);
  if (!spec.ok()) {
    out << "kiln cache: " << spec.message() << '\n';
    return 2;
  }
  auto hit = Restore(*spec, out);
  if (hit.ok()) {
    out << "kiln cache: hit: the outputs of run " << hit->run << " (task " << hit->task
        << ", attempt " << hit->attempt << ") are in place; the task is not run\n";
    out.flush();
    return 0;
  }
  if (!spec->report.empty()) ::unlink(spec->report.c_str());
  out << "kiln cache: miss (" << hit.message() << "); running the task\n";
  out.flush();
  std::vector<char*> argv;
  for (auto& a : spec->argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  out << "kiln cache: cannot run " << spec->argv[0] << ": " << std::strerror(errno) << '\n';
  return 127;
}

}  // namespace kiln::plugins
