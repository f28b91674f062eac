#include "executor/local_runner.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <utility>

#include "common/log.h"
#include "executor/collector.h"
#include "executor/os.h"

namespace kiln::executor {

LocalTaskRunner::LocalTaskRunner(boost::asio::io_context& io, uint64_t log_cap_bytes,
                                 Duration kill_grace)
    : io_(io), processes_(io), log_cap_bytes_(log_cap_bytes), kill_grace_(kill_grace) {}

void LocalTaskRunner::Start(scheduler::LaunchRequest request,
                            std::function<void(scheduler::AttemptOutcome)> on_exit) {
  ProcessSpec spec;
  spec.argv = std::move(request.argv);
  spec.env = std::move(request.env);
  spec.cwd = std::move(request.cwd);
  spec.log_path = std::move(request.log_path);
  spec.log_cap_bytes = log_cap_bytes_;
  // The process layer creates it so that a failure lands in the attempt's log like any other
  // start failure, and before the working directory (often the run folder) is checked.
  if (!request.run_dir.empty()) spec.create_dirs.push_back(std::move(request.run_dir));
  spec.timeout = request.timeout;
  spec.kill_grace = kill_grace_;
  spec.user = request.user;
  spec.mask = std::move(request.mask);
  CollectJob job{std::move(request.collect_argv), spec.cwd,    spec.log_path,
                 std::move(request.user),         kill_grace_, std::move(request.collect_also_on)};

  const std::pair key(request.run, request.task);
  const int number = request.attempt;
  ProcessManager::Handle handle = processes_.Spawn(
      std::move(spec), [this, key, number, job = std::move(job),
                        on_exit = std::move(on_exit)](ProcessResult result) mutable {
        // Only forget the entry if it is still this attempt's (a newer attempt may have replaced
        // it).
        auto it = attempts_.find(key);
        const bool current = it != attempts_.end() && it->second.number == number;
        scheduler::AttemptOutcome outcome = ToAttemptOutcome(result);
        if (current && ShouldCollect(job, outcome)) {
          // Kill() now stops the collector.
          it->second.handle =
              Collect(processes_, job, std::move(outcome),
                      [this, key, number,
                       on_exit = std::move(on_exit)](scheduler::AttemptOutcome collected) {
                        auto again = attempts_.find(key);
                        if (again != attempts_.end() && again->second.number == number) {
                          attempts_.erase(again);
                        }
                        on_exit(std::move(collected));
                      });
          return;
        }
        if (current) attempts_.erase(it);
        on_exit(std::move(outcome));
      });
  attempts_[key] = Attempt{handle, number};
}

void LocalTaskRunner::Kill(RunId run, TaskId task) {
  auto it = attempts_.find({run, task});
  if (it != attempts_.end()) processes_.Terminate(it->second.handle);
}

void LocalTaskRunner::Adopt(const scheduler::AdoptRequest& request,
                            std::function<void(scheduler::AttemptOutcome)> on_exit) {
  scheduler::AttemptOutcome lost;
  lost.lost = true;
  lost.error = "it was started by another process (supervisor '" + request.supervisor +
               "'), which this one cannot reach";
  boost::asio::post(io_, [on_exit = std::move(on_exit), lost] { on_exit(lost); });
}

void LocalTaskRunner::KillAll() { processes_.TerminateAll(); }

scheduler::AttemptOutcome ToAttemptOutcome(const ProcessResult& result) {
  scheduler::AttemptOutcome outcome;
  outcome.started = result.started;
  outcome.error = result.error;
  outcome.exit_code = result.exit_code;
  outcome.signal = result.signal;
  outcome.timed_out = result.timed_out;
  outcome.killed = result.killed;
  outcome.started_at = result.started_at;
  outcome.ended_at = result.ended_at;
  outcome.cpu = result.cpu;
  outcome.max_rss_kb = result.max_rss_kb;
  outcome.log_bytes = result.log_bytes;
  outcome.log_truncated = result.log_truncated;
  return outcome;
}

void LocalTaskRunner::CloseRunFolder(const std::filesystem::path& run_dir) {
  if (Status s = os::CloseFolder(run_dir); !s.ok()) log::Warn(s.message());
}

}  // namespace kiln::executor
