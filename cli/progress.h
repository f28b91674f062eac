// Live progress of runs for a terminal or a log: a line per task start and end, and on a
// terminal one status line that updates in place.
#pragma once

#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <string>

#include "scheduler/scheduler.h"

namespace kiln::cli {

class Progress final : public scheduler::Observer {
 public:
  // Writes to `out` (stderr); `tty` enables the updating status line.
  Progress(std::FILE* out, bool tty, size_t total_tasks);
  // Instances ("train[3]") are reported like tasks but not counted: their task counts once.
  void OnTaskState(RunId run, const dag::TaskSpec& task, const std::string& name,
                   dag::TaskState state, int attempt, const std::string& reason) override;
  void OnRunFinished(RunId run, dag::RunState state) override;

  bool finished() const { return finished_; }
  dag::RunState final_state() const { return final_state_; }

 private:
  void Line(const std::string& text);
  void Status();

  std::FILE* out_;
  bool tty_;
  size_t total_;
  size_t done_ = 0;
  std::set<std::string> running_;
  std::map<std::string, std::chrono::steady_clock::time_point> started_;
  bool finished_ = false;
  dag::RunState final_state_ = dag::RunState::kFailed;
};

}  // namespace kiln::cli
