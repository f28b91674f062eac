// The model registry on the daemon's side (daemon/models.cc): what each model's champion is, for
// the gates that start; keeping a registered version's artifact under the data folder; the
// model card.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/users.h"
#include "scheduler/records.h"
#include "store/database.h"

namespace kiln::daemon {

// The champion of each model as this process last read or set it: what a gate's process gets as
// "champion" when its attempt starts (its registration checks again against the database).
// Thread-safe.
class ChampionCache {
 public:
  struct Champion {
    int version = 0;
    std::map<std::string, double> metrics;
  };
  void Set(const std::string& model, std::optional<Champion> champion);
  std::optional<Champion> Get(const std::string& model) const;
  // Reads every model's champion.
  Status Load(store::Database& db);
  // The champion of `model` as a registry read has it.
  void Update(const scheduler::ModelRecord& model);

 private:
  mutable std::mutex mu_;
  std::map<std::string, Champion> champions_;
};

// A JSON object of numbers as a map (non-numbers left out).
std::map<std::string, double> MetricsOf(const std::string& json_object);

// Copies the file at `path` (absolute, beneath `run_dir` or `pipeline_dir`: no '..' and no link
// leads out) to <models_dir>/<sha256>, hashing it on the way; fails when its SHA-256 is not
// `sha256` (the file changed after the gate read it), and before copying anything when its size
// is not `bytes` (>= 0). Returns its size. Beneath `pipeline_dir` the file is opened with the
// rights of `reader` (the run's tasks': daemon/as_user.h), so that it is only ever one the gate
// could read; beneath `run_dir` (the run's own files, closed to its tasks once it ended) with
// this process's.
Result<int64_t> KeepArtifact(const std::filesystem::path& models_dir,
                             const std::filesystem::path& run_dir,
                             const std::filesystem::path& pipeline_dir, const std::string& path,
                             const std::string& sha256, int64_t bytes = -1,
                             const Identity& reader = {});

// The card of one version, in Markdown: what kiln knows of it.
std::string ModelCard(const scheduler::ModelRecord& model, const scheduler::ModelVersionRecord& v,
                      const std::vector<scheduler::LineageFile>& inputs);

}  // namespace kiln::daemon
