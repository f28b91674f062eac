#include <filesystem>
#include <iostream>
#include <map>

#include "cli/commands.h"
#include "cli/runtime.h"
#include "config/pipeline_loader.h"

namespace kiln::cli {

namespace fs = std::filesystem;

namespace {

// Pipeline files named by the arguments: files as given, folders searched for *.toml.
std::vector<fs::path> Expand(const std::vector<std::string>& paths, int& errors) {
  std::vector<fs::path> files;
  for (const auto& p : paths) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
           it.increment(ec)) {
        if (it->is_regular_file() && it->path().extension() == ".toml") found.push_back(it->path());
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (fs::exists(p, ec)) {
      files.emplace_back(p);
    } else {
      std::cerr << p << ": no such file or folder\n";
      ++errors;
    }
  }
  return files;
}

}  // namespace

int Validate(const std::vector<std::string>& paths) {
  int errors = 0;
  std::map<std::string, fs::path> names;
  auto files = Expand(paths, errors);
  for (const auto& file : files) {
    auto result = config::LoadPipelineFile(file);
    PrintDiagnostics(result.diagnostics);
    errors += static_cast<int>(result.diagnostics.size());
    if (!result.pipeline) continue;
    const std::string& name = result.pipeline->spec.name;
    auto [it, inserted] = names.emplace(name, file);
    if (!inserted) {
      std::cerr << file.string() << ": pipeline.name: '" << name << "' is also the name of "
                << it->second.string() << "; names must be unique\n";
      ++errors;
    }
  }
  if (errors > 0) {
    std::cerr << errors << (errors == 1 ? " error" : " errors") << " in " << files.size()
              << (files.size() == 1 ? " file" : " files") << '\n';
    return 1;
  }
  std::cout << "ok: " << files.size() << (files.size() == 1 ? " pipeline" : " pipelines") << '\n';
  return 0;
}

int Graph(const std::string& file, const std::string& format) {
  auto result = config::LoadPipelineFile(file);
  if (!result.pipeline) {
    PrintDiagnostics(result.diagnostics);
    return 1;
  }
  const auto& spec = result.pipeline->spec;
  std::cout << (format == "mermaid" ? dag::ToMermaid(spec) : dag::ToDot(spec));
  return 0;
}

}  // namespace kiln::cli
