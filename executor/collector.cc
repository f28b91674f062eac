#include "executor/collector.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "common/text.h"
#include "executor/os.h"

namespace kiln::executor {

namespace {

// Up to `cap` + 1 bytes of `path`, which is removed.
std::string TakeReport(const std::filesystem::path& path, uint64_t cap) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  ::unlink(path.c_str());
  if (fd < 0) return out;
  char buf[64 * 1024];
  ssize_t n;
  while (out.size() <= cap && (n = ::read(fd, buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

void AppendToLog(const std::filesystem::path& log, const std::string& line) {
  // Created if the task printed nothing (a log is made at its first byte).
  int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd < 0) return;
  (void)os::WriteAll(fd, "[kiln: " + line + "]\n");
  ::close(fd);
}

// Why the collection failed, from how the collector ended and what it printed.
std::string Failure(const ProcessResult& r, const std::string& report) {
  if (!r.started) return "cannot start the collector of its results: " + r.error;
  if (r.timed_out) {
    return "collecting its inputs, outputs and metrics took longer than " +
           FormatDuration(kCollectTimeout);
  }
  if (r.killed) return "stopped while its inputs, outputs and metrics were collected";
  if (r.signal) {
    return "the collector of its results was killed by signal " + std::to_string(*r.signal);
  }
  if (r.exit_code && *r.exit_code == 0) {
    return "the collector's report is larger than " + std::to_string(kMaxResultsBytes) + " bytes";
  }
  std::string text = Trim(report);
  if (text.size() > 4000) text = text.substr(0, 4000) + "...";
  if (text.empty()) text = "the collector of its results failed without saying why";
  return SafeUtf8(text);
}

}  // namespace

bool ShouldCollect(const CollectJob& job, const scheduler::AttemptOutcome& outcome) {
  return !job.argv.empty() && outcome.started && !outcome.killed && !outcome.timed_out &&
         !outcome.signal && outcome.exit_code &&
         (*outcome.exit_code == 0 || BestEffort(job, outcome));
}

bool BestEffort(const CollectJob& job, const scheduler::AttemptOutcome& outcome) {
  return outcome.exit_code && *outcome.exit_code != 0 &&
         std::find(job.also_on.begin(), job.also_on.end(), *outcome.exit_code) != job.also_on.end();
}

ProcessManager::Handle Collect(ProcessManager& processes, const CollectJob& job,
                               scheduler::AttemptOutcome outcome,
                               std::function<void(scheduler::AttemptOutcome)> done) {
  ProcessSpec spec;
  spec.argv = job.argv;
  // Nothing of the task's environment: the collector needs none, and secrets stay out of it.
  spec.env = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"LC_ALL", "C.UTF-8"}};
  // After a skip code only the decision is read (its report and metrics): a kind that said no
  // has not written its outputs, and one missing file must not lose the rest.
  if (BestEffort(job, outcome)) spec.env.emplace_back("KILN_COLLECT_DECISION_ONLY", "1");
  spec.cwd = job.cwd;
  const std::filesystem::path report = job.log_path.string() + ".results";
  spec.log_path = report;
  spec.log_cap_bytes = kMaxResultsBytes;
  spec.timeout = kCollectTimeout;
  spec.kill_grace = job.kill_grace;
  spec.user = job.user;
  const std::filesystem::path log = job.log_path;
  const bool best_effort = BestEffort(job, outcome);
  return processes.Spawn(std::move(spec), [outcome = std::move(outcome), report, log, best_effort,
                                           done = std::move(done)](ProcessResult r) mutable {
    std::string text = TakeReport(report, kMaxResultsBytes);
    // r.error: its report could not be written (the file is made at the first byte).
    const bool ok = r.started && r.error.empty() && !r.killed && !r.timed_out && !r.signal &&
                    r.exit_code && *r.exit_code == 0 && !r.log_truncated &&
                    text.size() <= kMaxResultsBytes;
    if (ok) {
      outcome.results = Trim(std::move(text));
    } else if (best_effort) {
      // Its end stands (a skip stays a skip, stopped or not); only what the collector could not
      // read is missing.
      AppendToLog(log, "its results were not kept: " + Failure(r, text));
    } else {
      outcome.collect_failed = true;
      outcome.killed = r.killed;
      outcome.error = Failure(r, text);
      AppendToLog(log, outcome.error);
    }
    done(std::move(outcome));
  });
}

}  // namespace kiln::executor
