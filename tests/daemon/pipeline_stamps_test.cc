// The stamps the start takes of the pipelines folder, and which files changed between two.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "daemon/pipeline_watcher.h"

using kiln::daemon::ChangedFiles;
using kiln::daemon::FolderStamps;
using kiln::daemon::StampPipelineFiles;
namespace fs = std::filesystem;

namespace {

void Write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary | std::ios::trunc) << text;
}

}  // namespace

TEST_CASE("a file written again, replaced, added or deleted is changed, and the rest is not") {
  const fs::path dir = fs::temp_directory_path() / ("kiln-stamps-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  Write(dir / "same.toml", "[pipeline]\nname = \"same\"\n");
  Write(dir / "edited.toml", "[pipeline]\nname = \"edited\"\n");
  Write(dir / "replaced.toml", "[pipeline]\nname = \"replaced\"\n");
  Write(dir / "deleted.toml", "[pipeline]\nname = \"deleted\"\n");
  Write(dir / "team/nested.toml", "[pipeline]\nname = \"nested\"\n");
  Write(dir / "notes.txt", "not a pipeline file");
  Write(dir / ".hidden/skipped.toml", "[pipeline]\nname = \"hidden\"\n");
  const FolderStamps before = StampPipelineFiles(dir);
  CHECK(before.size() == 5);
  CHECK(ChangedFiles(before, StampPipelineFiles(dir)).empty());

  Write(dir / "edited.toml", "[pipeline]\nname = \"edited\"\ndescription = \"longer now\"\n");
  // An editor's save: the same bytes written to another file, renamed over the old one.
  Write(dir / "replaced.toml.tmp", "[pipeline]\nname = \"replaced\"\n");
  fs::rename(dir / "replaced.toml.tmp", dir / "replaced.toml");
  fs::remove(dir / "deleted.toml");
  Write(dir / "added.toml", "[pipeline]\nname = \"added\"\n");
  Write(dir / ".hidden/skipped.toml", "[pipeline]\nname = \"still hidden\"\n");
  CHECK(ChangedFiles(before, StampPipelineFiles(dir)) ==
        std::set<std::string>{(dir / "added.toml").string(), (dir / "deleted.toml").string(),
                              (dir / "edited.toml").string(), (dir / "replaced.toml").string()});
  CHECK(StampPipelineFiles(dir / "missing").empty());
  CHECK(StampPipelineFiles("").empty());
  fs::remove_all(dir);
}
