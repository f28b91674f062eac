// The pipelines folder: loaded at start (LoadPipelineEntries) and reloaded as it changes
// (DaemonService::Reload, on the watcher's thread).
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/log.h"
#include "common/time.h"
#include "daemon/service.h"
#include "dag/triggers.h"
#include "plugins/registry.h"

namespace kiln::daemon {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The name a broken file without a readable name is listed under: its path in the pipelines
// folder with '.' for '/' ("team-a.pipeline.toml"), so that two such files of the same name stay
// two entries, each reachable at /api/v1/pipelines/{name}.
std::string BrokenFileName(const fs::path& file, const fs::path& dir) {
  const fs::path rel = file.lexically_relative(dir);
  if (dir.empty() || rel.empty() || *rel.begin() == "..") return file.filename().string();
  std::string name = rel.string();
  std::replace(name.begin(), name.end(), '/', '.');
  return name;
}

}  // namespace

std::map<std::string, PipelineEntry> LoadPipelineEntries(const std::filesystem::path& dir,
                                                         const dag::SecretNames& secrets) {
  std::map<std::string, PipelineEntry> out;
  if (dir.empty()) return out;
  for (auto& result : config::LoadPipelineDir(dir, plugins::Builtins(), &secrets)) {
    std::string text;
    for (const auto& d : result.diagnostics) {
      log::Error(d.ToString());
      text += (text.empty() ? "" : "\n") + d.ToString();
    }
    // A broken file without a readable name is listed under its file name.
    std::string name = result.pipeline ? result.pipeline->spec.name : result.name;
    if (name.empty()) name = BrokenFileName(result.file, dir);
    if (auto it = out.find(name); it != out.end()) {
      // A file that loaded wins over a broken one declaring the same name.
      bool replace = !it->second.pipeline && result.pipeline;
      log::Error((replace ? it->second.file : result.file.string()) + ": pipeline.name: '" + name +
                 "' is already used by " + (replace ? result.file.string() : it->second.file) +
                 "; file ignored");
      if (!replace) continue;
      out.erase(it);
    }
    PipelineEntry entry;
    entry.file = result.file.string();
    entry.pipeline = result.pipeline;
    entry.named = result.pipeline || !result.name.empty();
    if (!text.empty()) entry.load_error = text;
    out.emplace(name, std::move(entry));
  }
  // Pipelines that trigger each other in a cycle do not run until the cycle is broken.
  while (true) {
    std::vector<const dag::PipelineSpec*> specs;
    for (const auto& [name, entry] : out) {
      if (entry.pipeline) specs.push_back(&entry.pipeline->spec);
    }
    auto cycle = dag::CheckTriggers(specs, /*unknown_is_error=*/false);
    if (cycle.empty()) break;
    bool dropped = false;
    for (auto& [name, entry] : out) {
      if (entry.pipeline && entry.pipeline->spec.file == cycle[0].file) {
        cycle[0].file = entry.file;
        log::Error(cycle[0].ToString());
        entry.load_error = cycle[0].ToString();
        entry.pipeline = nullptr;
        dropped = true;
        break;
      }
    }
    if (!dropped) break;
  }
  return out;
}

void KeepLastLoaded(DaemonStore& store, std::map<std::string, PipelineEntry>& entries) {
  std::vector<store::LoadedVersion> versions;
  std::vector<std::string> broken;
  for (const auto& [name, entry] : entries) {
    if (entry.pipeline) {
      versions.push_back(
          {name, entry.pipeline->spec.content_hash, entry.pipeline->spec.source, entry.file});
    } else {
      broken.push_back(name);
    }
  }
  if (Status s = store.RecordLoaded(versions); !s.ok()) log::Error(s.message());
  for (const std::string& listed : broken) {
    PipelineEntry& entry = entries.at(listed);
    auto last = store.LastLoadedVersion(entry.named ? listed : "", entry.file);
    if (!last.ok()) {
      log::Error(entry.file + ": its last good version cannot be read (" + last.message() +
                 "); it does not run until it loads");
      continue;
    }
    if (!*last) continue;
    const store::LastLoaded& kept = **last;
    // Named by its file: its pipeline's name, unless a file that loaded declares it now, and
    // only its pipeline's last version (not one it had before it moved to another file).
    if (kept.pipeline != listed && entries.count(kept.pipeline)) continue;
    if (!entry.named) {
      auto newest = store.LastLoadedVersion(kept.pipeline, "");
      if (!newest.ok() || !*newest || (*newest)->hash != kept.hash) continue;
    }
    config::LoadResult parsed = config::ParsePipeline(kept.source, entry.file, plugins::Builtins());
    if (!parsed.pipeline) continue;  // no longer valid for this kiln
    std::map<std::string, std::vector<std::string>> edges;
    for (const auto& [name, other] : entries) {
      if (other.pipeline && name != listed) edges[name] = other.pipeline->spec.trigger_on_success;
    }
    edges[kept.pipeline] = parsed.pipeline->spec.trigger_on_success;
    if (dag::FindTriggerCycle(edges)) continue;  // with what loaded now
    PipelineEntry adopted = std::move(entry);
    entries.erase(listed);
    adopted.pipeline = parsed.pipeline;
    adopted.named = true;
    log::Warn(adopted.file + ": pipeline '" + kept.pipeline + "' runs its last good version (" +
              kept.hash.substr(0, 12) + ", loaded " + FormatRfc3339(kept.loaded_at) +
              ") until the file loads again");
    entries.emplace(kept.pipeline, std::move(adopted));
  }
}

void DaemonService::ForgetFirstCheckLocked(const std::string& name) {
  // The start's report counts the pipelines it knew: one gone before its first check ends it
  // as well as a check would.
  if (first_checks_.erase(name) != 0 && first_checks_.empty() && first_pending_.empty()) {
    std::cout << FirstChecksLine() << std::endl;
  }
}

void DaemonService::LoadChangedSinceStart(const std::set<std::string>& changed) {
  if (changed.empty()) return;
  // On the schedules' thread, as any reload: never on the thread that is about to run the loop
  // (a request holding the pause lock may be waiting for that loop).
  timer_.Post([this, changed] {
    log::Info(std::to_string(changed.size()) +
              " pipeline files may have changed while the daemon started; reading them again");
    Reload(changed, /*rescan=*/true, /*same_is_quiet=*/true);
  });
}

void DaemonService::SetPipelinesDir(const fs::path& dir) {
  std::lock_guard lock(mu_);
  pipelines_dir_ = dir;
}

Status DaemonService::WatchPipelines(const fs::path& dir) {
  SetPipelinesDir(dir);
  watcher_ = std::make_unique<PipelineWatcher>(
      dir, [this](const std::set<std::string>& changed, bool rescan) { Reload(changed, rescan); });
  return watcher_->Start();
}

void DaemonService::Reload(const std::set<std::string>& changed, bool rescan, bool same_is_quiet) {
  std::lock_guard reloading(reload_mu_);
  std::map<std::string, std::string> known_files;
  std::filesystem::path dir;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    known_files = files_;
    dir = pipelines_dir_;
  }
  // Listing and parsing happen without the lock: requests and the scheduler go on meanwhile.
  std::vector<std::string> load, gone;
  if (rescan) {
    auto files = disk_.ListPipelineFiles(dir);
    if (!files.ok()) {
      log::Error(dir.string() + ": " + files.message());
      return;
    }
    std::set<std::string> present;
    for (const fs::path& f : *files) present.insert(f.string());
    for (const std::string& f : present) {
      if (!known_files.count(f) || changed.count(f)) load.push_back(f);
    }
    for (const auto& [f, name] : known_files) {
      if (!present.count(f)) gone.push_back(f);
    }
  } else {
    for (const std::string& f : changed) {
      if (disk_.IsRegularFile(f)) {
        load.push_back(f);
      } else if (known_files.count(f)) {
        gone.push_back(f);
      }
    }
  }
  std::vector<config::LoadResult> loaded;
  for (const std::string& f : load) loaded.push_back(disk_.LoadPipelineFile(f));
  // Exclusive with pause and unpause: the pause states read here are still true when applied.
  std::unique_lock pause_lock(pause_mu_);
  auto paused = store_.PausedPipelines();
  if (!paused.ok()) {
    log::Error("reloading pipelines: " + paused.message());
    return;
  }
  const Instant now = Now();
  std::vector<ReloadEvent> events;
  std::vector<store::LoadedVersion> versions;
  std::vector<std::pair<std::string, dag::PipelinePtr>> unpaused;
  {
    std::lock_guard lock(mu_);
    for (const auto& result : loaded) {
      const bool was_paused = result.pipeline && pipelines_.count(result.pipeline->spec.name) &&
                              pipelines_.at(result.pipeline->spec.name).paused;
      if (auto e = ApplyFile(result, *paused, now, same_is_quiet)) {
        if (e->kind == "pipeline_loaded") {
          versions.push_back({e->pipeline, result.pipeline->spec.content_hash,
                              result.pipeline->spec.source, result.file.string()});
        }
        if (was_paused && e->kind == "pipeline_loaded" && !pipelines_.at(e->pipeline).paused) {
          unpaused.emplace_back(e->pipeline, pipelines_.at(e->pipeline).entry.pipeline);
        }
        events.push_back(std::move(*e));
      }
    }
    for (const std::string& f : gone) {
      if (auto e = RemoveFile(f)) events.push_back(std::move(*e));
    }
  }
  // Unpaused by its file: the runs that waited start.
  for (const auto& [name, pipeline] : unpaused) {
    if (Status s = StartQueued(name, pipeline, /*wait=*/false); !s.ok()) log::Error(s.message());
  }
  pause_lock.unlock();
  // What a restart falls back on should the file break before it (KeepLastLoaded); a deleted
  // file's pipeline is not brought back by a broken file of the same path.
  if (Status s = store_.RecordLoaded(versions); !s.ok()) log::Error(s.message());
  if (Status s = store_.ForgetLoadedFiles(gone); !s.ok()) log::Error(s.message());
  for (const ReloadEvent& e : events) {
    if (e.kind == "pipeline_removed") {
      timer_.Forget(e.pipeline);
    } else {
      timer_.Touch(e.pipeline);
    }
    Status s = store_.RecordPipelineEvent(e.pipeline, e.kind, "reload", e.detail);
    if (!s.ok()) log::Error(s.message());
  }
}

std::optional<DaemonService::ReloadEvent> DaemonService::ApplyFile(
    const config::LoadResult& loaded, const std::map<std::string, bool>& paused, Instant now,
    bool same_is_quiet) {
  const std::string file = loaded.file.string();
  std::string old_name;
  if (auto it = files_.find(file); it != files_.end()) old_name = it->second;
  config::LoadResult result = loaded;
  if (result.pipeline) {
    // A version that closes a cycle of completion triggers is refused like a broken edit.
    const dag::PipelineSpec& spec = result.pipeline->spec;
    std::map<std::string, std::vector<std::string>> edges;
    for (const auto& [n, k] : pipelines_) {
      if (k.entry.pipeline && n != old_name && n != spec.name) {
        edges[n] = k.entry.pipeline->spec.trigger_on_success;
      }
    }
    edges[spec.name] = spec.trigger_on_success;
    if (auto cycle = dag::FindTriggerCycle(edges)) {
      std::string text;
      for (const std::string& n : *cycle) text += (text.empty() ? "" : " -> ") + n;
      dag::SourceLoc loc;
      if (auto it = spec.locs.find("pipeline.trigger_on_success"); it != spec.locs.end()) {
        loc = it->second;
      }
      result.name = spec.name;
      result.diagnostics = {{file, loc, "pipeline.trigger_on_success",
                             "pipelines trigger each other in a cycle: " + text}};
      result.pipeline = nullptr;
    }
  }
  if (result.pipeline) {
    const dag::PipelinePtr& pipeline = result.pipeline;
    const std::string& name = pipeline->spec.name;
    if (auto it = pipelines_.find(name); it != pipelines_.end() && it->second.entry.file != file) {
      log::Error(file + ": pipeline.name: '" + name + "' is already used by " +
                 it->second.entry.file + "; file ignored");
      return std::nullopt;
    }
    if (!old_name.empty() && old_name != name) {
      // The file now declares another name: the old one is gone.
      pipelines_.erase(old_name);
      waiting_.erase(old_name);
      ForgetFirstCheckLocked(old_name);
      timer_.Forget(old_name);
    }
    auto [it, added] = pipelines_.try_emplace(name);
    Known& known = it->second;
    if (!added && known.entry.pipeline &&
        known.entry.pipeline->spec.content_hash == pipeline->spec.content_hash &&
        !known.entry.load_error) {
      return std::nullopt;  // written again, same bytes
    }
    const bool was_paused = known.paused;
    if (!added && known.entry.pipeline &&
        (known.entry.pipeline->spec.schedule != pipeline->spec.schedule ||
         known.entry.pipeline->spec.timezone != pipeline->spec.timezone)) {
      known.schedule_since = now;
    }
    known.entry.file = file;
    known.entry.pipeline = pipeline;
    known.entry.load_error.reset();
    known.entry.named = true;
    auto p = paused.find(name);
    known.paused = p != paused.end() ? p->second : pipeline->spec.paused;
    if (added || (was_paused && !known.paused)) known.live_since = now;
    files_[file] = name;
    log::Info(file + ": pipeline '" + name + "' " + (added ? "loaded" : "reloaded") + " (version " +
              pipeline->spec.content_hash.substr(0, 12) + ")");
    return ReloadEvent{"pipeline_loaded", name,
                       json{{"file", file}, {"version", pipeline->spec.content_hash}}.dump(
                           -1, ' ', false, nlohmann::json::error_handler_t::replace)};
  }
  // Broken: listed under the name it had, else the one it declares, else its file name.
  std::string name = !old_name.empty() ? old_name : result.name;
  if (name.empty()) name = BrokenFileName(result.file, pipelines_dir_);
  json errors = json::array();
  std::string text;
  for (const auto& d : result.diagnostics) {
    errors.push_back(d.ToString());
    text += (text.empty() ? "" : "\n") + d.ToString();
  }
  auto [it, added] = pipelines_.try_emplace(name);
  Known& known = it->second;
  if (!added && known.entry.file != file) {
    log::Error(file + ": pipeline.name: '" + name + "' is already used by " + known.entry.file +
               "; file ignored");
    return std::nullopt;
  }
  if (same_is_quiet && !added && !old_name.empty() && known.entry.load_error == text) {
    return std::nullopt;  // read again, broken the same way
  }
  if (added) known.live_since = now;
  known.entry.file = file;
  known.entry.load_error = text;
  known.entry.named = !old_name.empty() || !result.name.empty();
  files_[file] = name;
  const bool kept = known.entry.pipeline != nullptr;
  for (const auto& d : result.diagnostics) {
    log::Error(d.ToString() + (kept ? " (the last good version stays in use)" : ""));
  }
  return ReloadEvent{
      "pipeline_load_failed", name,
      json{{"file", file},
           {"errors", errors},
           {"version_in_use", kept ? json(known.entry.pipeline->spec.content_hash) : json()}}
          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

std::optional<DaemonService::ReloadEvent> DaemonService::RemoveFile(const std::string& file) {
  auto f = files_.find(file);
  if (f == files_.end()) return std::nullopt;
  const std::string name = f->second;
  files_.erase(f);
  auto it = pipelines_.find(name);
  if (it == pipelines_.end() || it->second.entry.file != file) return std::nullopt;
  pipelines_.erase(it);
  waiting_.erase(name);
  ForgetFirstCheckLocked(name);
  log::Info(file + ": deleted; pipeline '" + name + "' is no longer scheduled");
  return ReloadEvent{
      "pipeline_removed", name,
      json{{"file", file}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
}

}  // namespace kiln::daemon
