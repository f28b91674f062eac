// Reads pipeline files (TOML, format v1) into dag::PipelineSpec, with file:line:col diagnostics.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "dag/graph.h"
#include "dag/kinds.h"
#include "dag/spec.h"
#include "dag/validate.h"

namespace kiln::config {

struct LoadResult {
  dag::PipelinePtr pipeline;                 // set when diagnostics is empty
  std::vector<dag::Diagnostic> diagnostics;  // every problem in the file, in file order
  std::filesystem::path file;                // as given
  // The pipeline's name when the file declares a valid one, even if the file has other errors
  // (so that a broken file can be shown under its pipeline); empty otherwise.
  std::string name;
};

// Parses `text` as if read from `file` (used in diagnostics as given), then runs dag::Validate.
// Reports TOML syntax errors, unknown keys, wrong types, bad durations, unknown trigger rules,
// duplicate env names, and everything dag::Validate reports. Never throws. `kinds`: the task
// kinds known besides shell (plugins::Builtins() in the daemon and the CLI). `secrets`: the
// names kiln.toml declares, or null to accept any (dag::Validate).
LoadResult ParsePipeline(std::string_view text, const std::filesystem::path& file,
                         const dag::KindCatalog& kinds = dag::ShellOnly(),
                         const dag::SecretNames* secrets = nullptr);
// Reads the file and parses it; an unreadable file is one diagnostic.
LoadResult LoadPipelineFile(const std::filesystem::path& file,
                            const dag::KindCatalog& kinds = dag::ShellOnly(),
                            const dag::SecretNames* secrets = nullptr);
// Every *.toml file in `dir` and its subfolders (sorted by path), loaded. Files and folders whose
// names start with '.' are skipped (editor files, a .kiln data folder); an unreadable folder is
// one result with one diagnostic.
std::vector<LoadResult> LoadPipelineDir(const std::filesystem::path& dir,
                                        const dag::KindCatalog& kinds = dag::ShellOnly(),
                                        const dag::SecretNames* secrets = nullptr);
// The files LoadPipelineDir would load, sorted; an error names the folder.
Result<std::vector<std::filesystem::path>> ListPipelineFiles(const std::filesystem::path& dir);

}  // namespace kiln::config
