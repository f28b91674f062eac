#include "daemon/models.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "common/paths.h"
#include "common/sha256.h"
#include "common/time.h"
#include "daemon/as_user.h"
#include "executor/os.h"

namespace kiln::daemon {

namespace fs = std::filesystem;
using json = nlohmann::json;

void ChampionCache::Set(const std::string& model, std::optional<Champion> champion) {
  std::lock_guard lock(mu_);
  if (champion) {
    champions_[model] = std::move(*champion);
  } else {
    champions_.erase(model);
  }
}

std::optional<ChampionCache::Champion> ChampionCache::Get(const std::string& model) const {
  std::lock_guard lock(mu_);
  auto it = champions_.find(model);
  if (it == champions_.end()) return std::nullopt;
  return it->second;
}

std::map<std::string, double> MetricsOf(const std::string& text) {
  std::map<std::string, double> out;
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  for (const auto& [k, v] : j.items()) {
    if (v.is_number()) out[k] = v.get<double>();
  }
  return out;
}

void ChampionCache::Update(const scheduler::ModelRecord& model) {
  std::optional<Champion> champion;
  for (const auto& v : model.history) {
    if (v.champion) champion = Champion{v.version, MetricsOf(v.metrics)};
  }
  Set(model.name, std::move(champion));
}

Status ChampionCache::Load(store::Database& db) {
  auto models = db.ListModels();
  if (!models.ok()) return models.status();
  for (const auto& m : *models) {
    if (!m.champion) continue;
    auto full = db.GetModel(m.name);
    if (!full.ok()) return full.status();
    Update(*full);
  }
  return Status::Ok();
}

namespace {

using Fd = executor::os::UniqueFd;

// A problem of the artifact itself: registering it again would fail the same way.
Status Refused(const std::string& what) {
  return Status::Error(ErrorCode::kInvalidArgument, what + ": " + std::strerror(errno));
}

// A problem of the data folder (full, failing): the next start tries again.
Status Failed(const std::string& what) {
  return Status::Error(ErrorCode::kUnavailable, what + ": " + std::strerror(errno));
}

}  // namespace

Result<int64_t> KeepArtifact(const fs::path& models_dir, const fs::path& run_dir,
                             const fs::path& pipeline_dir, const std::string& path,
                             const std::string& sha256, int64_t expected_bytes,
                             const Identity& reader) {
  const fs::path p = fs::path(path).lexically_normal();
  fs::path root;
  std::optional<fs::path> rel;
  for (const fs::path& dir : {run_dir.lexically_normal(), pipeline_dir.lexically_normal()}) {
    if (!p.is_absolute() || dir.empty()) continue;
    if ((rel = PathBeneath(p, dir))) {
      root = dir;
      break;
    }
  }
  if (!rel) {
    return Status::Error(
        ErrorCode::kInvalidArgument,
        "artifact '" + path + "' is outside the run folder and the pipeline's folder");
  }
  Fd dir(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return Refused("artifact '" + path + "': cannot open its folder");
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  // Beneath the pipeline's folder, with the task's rights: the daemon must not read there what
  // the gate could not. The run folder holds only the run's own files, and kiln closes it to
  // them once the run ends (a registration after a restart comes then).
  const Identity as = root == pipeline_dir.lexically_normal() ? reader : Identity{};
  int opened = -1;
  int err = 0;
  if (!AsUser(as, [&] {
        opened =
            static_cast<int>(::syscall(SYS_openat2, dir.get(), rel->c_str(), &how, sizeof how));
        err = errno;
      })) {
    // Of this daemon, not of the artifact: the next start tries again.
    return Status::Error(ErrorCode::kUnavailable,
                         "artifact '" + path + "': cannot take the rights of user " +
                             std::to_string(as.uid) + ", the run's tasks'");
  }
  errno = err;
  Fd in(opened);
  if (in.get() < 0) return Refused("artifact '" + path + "'");
  struct stat st {};
  if (::fstat(in.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "artifact '" + path + "' is not a regular file");
  }
  if (expected_bytes >= 0 && st.st_size != expected_bytes) {
    // Changed since the gate read it: refused before a byte is copied (its size is not told:
    // the daemon may read files the task cannot).
    return Status::Error(ErrorCode::kInvalidArgument,
                         "artifact '" + path +
                             "' is not the file the gate read (its size "
                             "differs from the gate's " +
                             std::to_string(expected_bytes) + " bytes)");
  }
  std::error_code ec;
  fs::create_directories(models_dir, ec);
  ::chmod(models_dir.c_str(), 0700);
  static std::atomic<uint64_t> counter{0};
  const fs::path tmp = models_dir / (".tmp-" + std::to_string(::getpid()) + "-" +
                                     std::to_string(counter.fetch_add(1)));
  Fd out(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (out.get() < 0) return Failed("keeping artifact '" + path + "' in " + models_dir.string());
  Sha256 sha;
  int64_t bytes = 0;
  std::string buf(1 << 20, '\0');
  while (true) {
    const ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      ::unlink(tmp.c_str());
      return Refused("reading artifact '" + path + "'");
    }
    if (n == 0) break;
    sha.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
    bytes += n;
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = ::write(out.get(), buf.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        ::unlink(tmp.c_str());
        return Failed("keeping artifact '" + path + "'");
      }
      done += w;
    }
  }
  const std::string got = sha.Hex();
  if (got != sha256) {
    ::unlink(tmp.c_str());
    // Its hash is not told: the daemon may read files the task cannot.
    return Status::Error(ErrorCode::kInvalidArgument,
                         "artifact '" + path +
                             "' is not the file the gate read (its SHA-256 "
                             "differs from the gate's " +
                             sha256 + ")");
  }
  if (::fsync(out.get()) != 0 || ::rename(tmp.c_str(), (models_dir / got).c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Failed("keeping artifact '" + path + "'");
  }
  // The rename too must survive a power loss before the version is registered.
  Fd folder(::open(models_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (folder.get() < 0 || ::fsync(folder.get()) != 0) {
    return Failed("keeping artifact '" + path + "'");
  }
  return bytes;
}

namespace {

std::string Param(const dag::ParamValue& value) { return dag::ToText(value); }

std::string Num(const json& v) {
  if (!v.is_number()) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v.get<double>());
  return buf;
}

}  // namespace

std::string ModelCard(const scheduler::ModelRecord& model, const scheduler::ModelVersionRecord& v,
                      const std::vector<scheduler::LineageFile>& inputs) {
  std::string md = "# " + model.name + ", version " + std::to_string(v.version) + "\n\n";
  md += v.champion ? "**The champion.**\n\n" : "";
  md += "| | |\n|---|---|\n";
  md += "| Artifact | SHA-256 `" + v.sha256 + "`, " + std::to_string(v.bytes) + " bytes |\n";
  md += "| Registered | " + FormatRfc3339(v.created_at) + " by the gate task `" + v.task_id +
        "` of run " + ToString(v.run) + " |\n";
  md += "| Pipeline | `" + v.pipeline + "`, version `" + v.version_hash.substr(0, 12) + "` |\n";
  std::string params;
  for (const auto& [name, value] : v.params) {
    params += (params.empty() ? "" : ", ") + ("`" + name + " = " + Param(value) + "`");
  }
  md += "| Params | " + (params.empty() ? std::string("none") : params) + " |\n";
  if (v.promoted_at) {
    md += "| Made champion | " + FormatRfc3339(*v.promoted_at) + " by " + v.promoted_by + " (" +
          v.promoted_how + ") |\n";
  } else {
    md += "| Made champion | never |\n";
  }
  md += "\n## Metrics\n\n| metric | value |\n|---|---|\n";
  const json metrics = json::parse(v.metrics, nullptr, false);
  if (metrics.is_object()) {
    for (const auto& [k, val] : metrics.items()) md += "| " + k + " | " + Num(val) + " |\n";
  }
  md += "\n## The gate's decision\n\n";
  const json decision = json::parse(v.decision, nullptr, false);
  const json champion = decision.is_object() ? decision.value("champion", json()) : json();
  md += champion.is_object() ? "Against the champion then, version " +
                                   Num(champion.value("version", json())) + ".\n\n"
                             : "There was no champion yet.\n\n";
  md += "| condition | value | against | holds |\n|---|---|---|---|\n";
  if (decision.is_object()) {
    for (const json& c : decision.value("conditions", json::array())) {
      md += "| `" + c.value("condition", std::string()) + "` | " + Num(c.value("value", json())) +
            " | " + (c.value("against", json()).is_null() ? "no champion" : Num(c["against"])) +
            " | " + (c.value("holds", false) ? "yes" : "no") + " |\n";
    }
  }
  md += "\n## Inputs of its run\n\n";
  if (inputs.empty()) {
    md += "No task of the run declared inputs.\n";
  } else {
    md += "| file | SHA-256 | bytes |\n|---|---|---|\n";
    for (const auto& f : inputs) {
      md += "| `" + f.path + "` | `" + f.sha256 + "` | " + std::to_string(f.bytes) + " |\n";
    }
  }
  return md;
}

}  // namespace kiln::daemon
