// Task kinds behind one interface (docs/plugins.md). A kind checks its own keys when a pipeline
// is loaded, with file:line:col like every other key, and says how an attempt runs: built-in
// kinds other than shell run as `kiln task <kind> --options JSON`, a child process under the same
// supervision, timeout, log and resource accounting as a shell task, never inside the daemon.
#pragma once

#include <filesystem>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "dag/spec.h"

namespace kiln::plugins {

// Where one attempt runs, inside `kiln task`: from the KILN_* environment every task gets.
struct TaskContext {
  std::filesystem::path run_dir;  // KILN_RUN_DIR
  std::string task_id;            // KILN_TASK_ID
  std::string pipeline;           // KILN_PIPELINE
  std::ostream* out = nullptr;    // the attempt's log
};

// What a kind's keys, checked, report: one problem at a dotted field.
class Problems {
 public:
  explicit Problems(std::vector<dag::Diagnostic>& out) : out_(out) {}
  void Add(std::string field, dag::SourceLoc loc, std::string message) {
    out_.push_back({"", loc, std::move(field), std::move(message)});
  }
  bool empty() const { return out_.empty(); }

 private:
  std::vector<dag::Diagnostic>& out_;
};

class Kind {
 public:
  virtual ~Kind() = default;
  virtual std::string_view Name() const = 0;
  // The keys of its own it accepts in a task table, sorted (for "unknown key" and its hint).
  virtual std::span<const std::string_view> Keys() const = 0;
  // Checks task.options (only keys from Keys() reach it) at load time. `field` is
  // "tasks.<id>". String values are templates: check what can be checked before rendering.
  virtual void Check(const dag::TaskSpec& task, const std::string& field,
                     Problems& problems) const = 0;
  // Runs one attempt inside `kiln task <kind>`, with the task's keys rendered. Writes what it
  // does to ctx.out; returns the process's exit code (0 success; see the kind's docs).
  virtual int Run(const dag::Value& options, const TaskContext& ctx) const = 0;
  // Exit codes of Run that end the task skipped rather than failed (a gate not passed).
  virtual std::vector<int> SkipExitCodes() const { return {}; }
  // How its tasks run. Anything but kProcess is carried out by the scheduler itself (an
  // approval waits for an operator), and Run is never called.
  virtual dag::Execution Runs() const { return dag::Execution::kProcess; }
  // The pipelines a task of this kind may start (a drift trigger), each with where it is named:
  // `kiln validate` of a folder checks them against its pipelines, as completion triggers.
  virtual std::vector<std::pair<std::string, dag::SourceLoc>> Starts(
      const dag::Value& /*options*/) const {
    return {};
  }
};

// A kind's keys as JSON (the `--options` of `kiln task`) and back; locations are not kept. A
// string that is not UTF-8 is an error: values travel byte for byte or not at all.
Result<std::string> ToJson(const dag::Value& value);

// The most bytes a kind's keys may take as JSON: they travel as one process argument, which
// Linux caps at 128 KiB; half of it leaves room for what templates add.
inline constexpr size_t kMaxOptionsBytes = 64 * 1024;
Result<dag::Value> FromJson(std::string_view json);

}  // namespace kiln::plugins
