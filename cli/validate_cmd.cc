#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

#include "cli/commands.h"
#include "cli/config_util.h"
#include "config/pipeline_loader.h"
#include "dag/triggers.h"
#include "plugins/registry.h"

namespace kiln::cli {

namespace fs = std::filesystem;

namespace {

// Loads the pipelines named by the arguments: files as given, folders searched for *.toml.
std::vector<config::LoadResult> LoadAll(const std::vector<std::string>& paths,
                                        const dag::SecretNames& secrets) {
  std::vector<config::LoadResult> results;
  // A file reached twice (a folder and a file in it, "x.toml ./x.toml") is one file: checked
  // once, and never "the same name as" itself.
  std::set<fs::path> seen;
  auto add = [&](config::LoadResult r) {
    std::error_code ec;
    fs::path key = fs::weakly_canonical(r.file, ec);
    if (ec) key = fs::absolute(r.file, ec).lexically_normal();
    if (seen.insert(key).second) results.push_back(std::move(r));
  };
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (auto& r : config::LoadPipelineDir(p, plugins::Builtins(), &secrets)) add(std::move(r));
    } else {
      add(config::LoadPipelineFile(p, plugins::Builtins(), &secrets));
    }
  }
  return results;
}

}  // namespace

void UseHugePagesForHeap() {
  constexpr size_t kPad = 64 << 20;
  constexpr uintptr_t kHuge = 2 << 20;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // keep big blocks on the heap too
  mallopt(M_TOP_PAD, kPad);             // the next growth of the heap reserves 64 MiB at once
  mallopt(M_TRIM_THRESHOLD, kPad * 2);
  auto before = reinterpret_cast<uintptr_t>(sbrk(0));
  void* probe = std::malloc(kHuge);  // grows the heap now, by the pad as well
  auto after = reinterpret_cast<uintptr_t>(sbrk(0));
  auto at = reinterpret_cast<uintptr_t>(probe);
  // Only the heap segment just grown, and only when the block came from the heap.
  uintptr_t begin = (before + kHuge - 1) & ~(kHuge - 1);
  uintptr_t end = after & ~(kHuge - 1);
  if (after > before && at < after && end > begin) {
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
  std::free(probe);
}

int Validate(const std::vector<std::string>& paths, const std::string& config_path) {
  dag::SecretNames secrets;
  if (!config_path.empty()) {
    auto cfg = LoadConfig(config_path);
    if (!cfg) return 1;
    for (const auto& [name, ref] : cfg->secrets) secrets.insert(name);
  }
  int errors = 0;
  std::map<std::string, fs::path> names;
  // Deliberately never freed: tearing down 10,000 task specs costs a fifth of the whole command,
  // and the process ends right after printing.
  const auto& results = *new std::vector<config::LoadResult>(LoadAll(paths, secrets));
  for (const auto& result : results) {
    PrintDiagnostics(result.diagnostics);
    errors += static_cast<int>(result.diagnostics.size());
    if (!result.pipeline) continue;
    const std::string& name = result.pipeline->spec.name;
    const fs::path& file = result.pipeline->spec.file;
    auto [it, inserted] = names.emplace(name, file);
    if (!inserted) {
      const auto& locs = result.pipeline->spec.locs;
      const auto loc = locs.find("pipeline.name");
      std::cerr << file.string();
      if (loc != locs.end()) std::cerr << ':' << loc->second.line << ':' << loc->second.column;
      std::cerr << ": pipeline.name: '" << name << "' is also the name of " << it->second.string()
                << "; names must be unique\n";
      ++errors;
    }
  }
  // Completion triggers over the whole set: cycles always; unknown names when a folder (the whole
  // set of a daemon) was given.
  bool folder = false;
  for (const auto& p : paths) {
    std::error_code ec;
    folder = folder || fs::is_directory(p, ec);
  }
  std::vector<const dag::PipelineSpec*> specs;
  std::map<fs::path, std::string> shown;
  for (const auto& result : results) {
    if (!result.pipeline) continue;
    specs.push_back(&result.pipeline->spec);
    shown[result.pipeline->spec.file] = result.file.string();
  }
  auto trigger_errors = dag::CheckTriggers(specs, folder);
  if (folder) {
    // The pipelines tasks start (a drift trigger) are the folder's too.
    std::string names;
    std::set<std::string> known;
    for (const dag::PipelineSpec* spec : specs) known.insert(spec->name);
    for (const std::string& name : known) names += (names.empty() ? "" : ", ") + name;
    for (const dag::PipelineSpec* spec : specs) {
      for (const dag::TaskSpec& task : spec->tasks) {
        const plugins::Kind* kind = plugins::Builtins().Find(task.kind);
        if (kind == nullptr) continue;
        for (const auto& [name, loc] : kind->Starts(task.options)) {
          if (known.count(name)) continue;
          trigger_errors.push_back({spec->file.string(), loc, "tasks." + task.id + ".trigger",
                                    "unknown pipeline '" + name + "' (pipelines: " + names + ")"});
        }
      }
    }
  }
  for (auto& d : trigger_errors) d.file = shown[d.file];
  PrintDiagnostics(trigger_errors);
  errors += static_cast<int>(trigger_errors.size());
  if (errors > 0) {
    std::cerr << errors << (errors == 1 ? " error" : " errors") << " in " << results.size()
              << (results.size() == 1 ? " file" : " files") << '\n';
    return 1;
  }
  std::cout << "ok: " << results.size() << (results.size() == 1 ? " pipeline" : " pipelines")
            << '\n';
  return 0;
}

int Graph(const std::string& file, const std::string& format) {
  auto result = config::LoadPipelineFile(file, plugins::Builtins());
  if (!result.pipeline) {
    PrintDiagnostics(result.diagnostics);
    return 1;
  }
  const auto& spec = result.pipeline->spec;
  std::cout << (format == "mermaid" ? dag::ToMermaid(spec) : dag::ToDot(spec));
  return 0;
}

}  // namespace kiln::cli
