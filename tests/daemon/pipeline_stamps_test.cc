// The stamps the start takes of the pipelines folder, and which files changed between two.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <limits>

#include "daemon/pipeline_watcher.h"

using kiln::daemon::ChangedFiles;
using kiln::daemon::FolderStamps;
using kiln::daemon::RacyFrom;
using kiln::daemon::StampPipelineFiles;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kNoRacy = std::numeric_limits<int64_t>::max();

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
  CHECK(ChangedFiles(before, StampPipelineFiles(dir), kNoRacy).empty());

  Write(dir / "edited.toml", "[pipeline]\nname = \"edited\"\ndescription = \"longer now\"\n");
  // An editor's save: the same bytes written to another file, renamed over the old one.
  Write(dir / "replaced.toml.tmp", "[pipeline]\nname = \"replaced\"\n");
  fs::rename(dir / "replaced.toml.tmp", dir / "replaced.toml");
  fs::remove(dir / "deleted.toml");
  Write(dir / "added.toml", "[pipeline]\nname = \"added\"\n");
  Write(dir / ".hidden/skipped.toml", "[pipeline]\nname = \"still hidden\"\n");
  // Rewritten in place at the same size: only its modification time tells.
  const auto touched = fs::last_write_time(dir / "same.toml");
  Write(dir / "touched.toml", "[pipeline]\nname = \"touched\"\n");
  const FolderStamps with_touched = StampPipelineFiles(dir);
  Write(dir / "touched.toml", "[pipeline]\nname = \"TOUCHED\"\n");
  fs::last_write_time(dir / "touched.toml", touched - std::chrono::hours(1));
  CHECK(ChangedFiles(with_touched, StampPipelineFiles(dir), kNoRacy)
            .count((dir / "touched.toml").string()) == 1);
  fs::remove(dir / "touched.toml");
  CHECK(ChangedFiles(before, StampPipelineFiles(dir), kNoRacy) ==
        std::set<std::string>{(dir / "added.toml").string(), (dir / "deleted.toml").string(),
                              (dir / "edited.toml").string(), (dir / "replaced.toml").string()});
  // Modified within two seconds of the first stamps: changed too, the stamps may not tell.
  for (const auto& [file, stamp] : StampPipelineFiles(dir)) {
    fs::last_write_time(file, touched - std::chrono::hours(1));
  }
  fs::last_write_time(dir / "same.toml", std::chrono::file_clock::now());
  const FolderStamps now = StampPipelineFiles(dir);
  CHECK(ChangedFiles(now, now, RacyFrom(std::chrono::system_clock::now())) ==
        std::set<std::string>{(dir / "same.toml").string()});
  CHECK(StampPipelineFiles(dir / "missing").empty());
  CHECK(StampPipelineFiles("").empty());
  fs::remove_all(dir);
}
