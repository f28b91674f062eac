#include "cli/progress.h"

#include <ctime>

namespace kiln::cli {

namespace {

std::string Clock() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

std::string Seconds(std::chrono::steady_clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2fs", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

Progress::Progress(std::FILE* out, bool tty, size_t total_tasks)
    : out_(out), tty_(tty), total_(total_tasks) {}

void Progress::OnTaskState(RunId, const dag::TaskSpec& /*task*/, const std::string& name,
                           dag::TaskState state, int attempt, const std::string& reason) {
  using dag::TaskState;
  auto now = std::chrono::steady_clock::now();
  std::string text;
  switch (state) {
    case TaskState::kQueued:
    case TaskState::kPending:
      return;
    case TaskState::kRunning:
      if (attempt == 0) {  // a task with for_each: its instances run
        text = name + ": " + reason;
        break;
      }
      running_.insert(name);
      started_[name] = now;
      text = name + " started" + (attempt > 1 ? " (attempt " + std::to_string(attempt) + ")" : "");
      break;
    case TaskState::kUpForRetry:
      running_.erase(name);
      text = name + " failed: " + reason;
      break;
    case TaskState::kWaiting:
      text = name + " waiting" + (reason.empty() ? "" : ": " + reason);
      break;
    default: {
      running_.erase(name);
      if (name.find('[') == std::string::npos) ++done_;
      text = name + " " + std::string(dag::Name(state));
      auto it = started_.find(name);
      if (it != started_.end() && attempt > 0) text += " in " + Seconds(now - it->second);
      if (!reason.empty() && state != TaskState::kSuccess) text += ": " + reason;
    }
  }
  Line(text);
}

void Progress::OnRunFinished(RunId, dag::RunState state) {
  finished_ = true;
  final_state_ = state;
  if (tty_) std::fputs("\r\033[K", out_);
  std::fflush(out_);
}

void Progress::Line(const std::string& text) {
  if (tty_) std::fputs("\r\033[K", out_);
  std::fprintf(out_, "%s %s\n", Clock().c_str(), text.c_str());
  Status();
}

void Progress::Status() {
  if (!tty_) return;
  std::string names;
  for (const auto& n : running_) {
    if (names.size() > 60) {
      names += ", ...";
      break;
    }
    names += (names.empty() ? "" : ", ") + n;
  }
  std::fprintf(out_, "[%zu/%zu] running: %s", done_, total_, names.empty() ? "-" : names.c_str());
  std::fflush(out_);
}

}  // namespace kiln::cli
