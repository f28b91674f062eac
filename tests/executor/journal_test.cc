// The supervisor's journal of its attempts (executor/attempt_journal.h), on a real folder.
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "executor/attempt_journal.h"
#include "tests/executor/test_util.h"

using namespace kiln;
using namespace kiln::executor;
using namespace kiln::executor::testing;
using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

namespace {

wire::Ended EndOf(const AttemptKey& key, int exit_code) {
  AttemptOutcome outcome;
  outcome.started = true;
  outcome.exit_code = exit_code;
  outcome.error = std::string(100, 'x');  // an end of a realistic size
  return wire::Ended{key, outcome};
}

std::vector<std::string> Files(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    out.push_back(entry.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("the journal keeps what is live across compactions, in one file") {
  TempDir tmp;
  AttemptJournal journal(tmp.path());
  auto found = journal.Open();
  REQUIRE(found.ok());
  CHECK(found->empty());
  CHECK(Files(tmp.path()) == std::vector<std::string>{"journal.1"});

  // Two attempts stay: one running, one ended and not yet in the database.
  const AttemptKey running{RunId(1), "running", 1};
  const AttemptKey ended{RunId(1), "ended", 2};
  journal.Started(running, ::getpid());
  journal.Started(ended, ::getpid());
  journal.Ended(EndOf(ended, 3));
  // Thousands come and go.
  int i = 0;
  while (journal.path().filename() == "journal.1") {
    REQUIRE(i < 100000);
    const AttemptKey key{RunId(2), "t" + std::to_string(i), 1};
    journal.Started(key, ::getpid());
    journal.Ended(EndOf(key, 0));
    journal.Forget(key);
    ++i;
  }
  CHECK(i > 1000);  // not before a megabyte was written
  // The old file is gone once the new one is whole; the new one starts small.
  CHECK(Files(tmp.path()) == std::vector<std::string>{"journal.2"});
  CHECK(std::filesystem::file_size(journal.path()) < 1024);
  CHECK(journal.live() == 2);

  auto read = ReadJournal(tmp.path());
  REQUIRE(read.size() == 2);
  CHECK(read[running].pid == ::getpid());
  CHECK(read[running].start_time > 0);
  CHECK_FALSE(read[running].end.has_value());
  REQUIRE(read[ended].end.has_value());
  CHECK(read[ended].end->outcome.exit_code == 3);
  CHECK(read[ended].end->outcome.error == std::string(100, 'x'));

  // A start of the same attempt again (its collector) drops nothing but the end.
  journal.Started(ended, ::getpid());
  CHECK_FALSE(ReadJournal(tmp.path())[ended].end.has_value());
  journal.Forget(running);
  journal.Forget(ended);
  CHECK(ReadJournal(tmp.path()).empty());
}

TEST_CASE("a journal opened again reports its ends, and its unended attempts as lost") {
  TempDir tmp;
  const AttemptKey done{RunId(3), "done", 1};
  const AttemptKey cut{RunId(3), "cut", 1};
  {
    AttemptJournal journal(tmp.path());
    REQUIRE(journal.Open().ok());
    journal.Started(done, ::getpid());
    journal.Ended(EndOf(done, 0));
    // pid 0: nothing to stop (a real pid whose start time does not match is not touched either).
    journal.Started(cut, 0);
  }  // as if the supervisor died here
  AttemptJournal again(tmp.path());
  auto found = again.Open();
  REQUIRE(found.ok());
  REQUIRE(found->size() == 2);
  CHECK((*found)[0].key == cut);
  CHECK((*found)[0].outcome.lost);
  CHECK((*found)[0].outcome.error == "its supervisor stopped while it ran and recorded no end");
  CHECK((*found)[1].key == done);
  CHECK((*found)[1].outcome.exit_code == 0);
  // The lost end is recorded in the new journal: a third supervisor reports the same.
  CHECK(Files(tmp.path()) == std::vector<std::string>{"journal.2"});
  auto read = ReadJournal(tmp.path());
  REQUIRE(read.size() == 2);
  REQUIRE(read[cut].end.has_value());
  CHECK(read[cut].end->outcome.lost);
}

TEST_CASE("an append that fails leaves a torn line, and the next change writes the journal whole") {
  TempDir tmp;
  AttemptJournal journal(tmp.path());
  REQUIRE(journal.Open().ok());
  const AttemptKey a{RunId(4), "a", 1};
  const AttemptKey b{RunId(4), "b", 1};
  journal.Started(a, ::getpid());
  const auto size = std::filesystem::file_size(journal.path());
  // The file may grow by 10 bytes more: a's end is cut short, as on a full disk (the write
  // fails with EFBIG instead of ENOSPC; the journal cannot tell them apart).
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  struct rlimit small = old;
  small.rlim_cur = size + 10;
  auto* previous = std::signal(SIGXFSZ, SIG_IGN);
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  journal.Ended(EndOf(a, 7));
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &old) == 0);
  std::signal(SIGXFSZ, previous);
  CHECK(std::filesystem::file_size(journal.path()) == size + 10);
  CHECK(Files(tmp.path()) == std::vector<std::string>{"journal.1"});
  // Read meanwhile, the torn line is skipped: a's end is not there.
  CHECK_FALSE(ReadJournal(tmp.path())[a].end.has_value());
  // The next change goes to a new file with every live entry, a's end among them.
  journal.Started(b, ::getpid());
  CHECK(Files(tmp.path()) == std::vector<std::string>{"journal.2"});
  auto read = ReadJournal(tmp.path());
  REQUIRE(read.size() == 2);
  REQUIRE(read[a].end.has_value());
  CHECK(read[a].end->outcome.exit_code == 7);
  CHECK(read[b].pid == ::getpid());
  // Appends go on in it.
  journal.Forget(a);
  CHECK(ReadJournal(tmp.path()).size() == 1);
  CHECK(Files(tmp.path()) == std::vector<std::string>{"journal.2"});
}
