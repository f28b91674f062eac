// Scheduler: for_each. A mapped task that becomes ready gets its items (inline, or its file read
// off the loop), expands into instances recorded with its change to running (one statement for
// all their rows), and keeps at most max_parallel of them under way.
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "common/log.h"
#include "dag/items.h"
#include "scheduler/scheduler.h"
#include "scheduler/scheduler_run.h"

namespace kiln::scheduler {

namespace asio = boost::asio;
using dag::TaskState;

void Scheduler::StartMapping(Run& run, TaskId task) {
  const dag::TaskSpec& spec = run.spec(task);
  const dag::ForEach& each = *spec.for_each;
  if (each.file.empty()) {
    Expand(run, task, each.items);
    return;
  }
  auto rendered = dag::Render(each.file, run.values, dag::Quoting::kNone);
  if (!rendered.ok()) {
    FinishTask(run, task, TaskState::kFailed, run.attempts[Index(task)], std::nullopt,
               "for_each: " + rendered.message());
    return;
  }
  if (!options_.read_items) {
    FinishTask(run, task, TaskState::kFailed, run.attempts[Index(task)], std::nullopt,
               "for_each: this runner reads no item files");
    return;
  }
  // Relative to the task's folder, like the paths its command uses.
  std::filesystem::path file = rendered.value();
  if (file.is_relative()) {
    std::filesystem::path dir = run.pipeline().spec.file.parent_path();
    if (!spec.workdir.empty()) dir /= spec.workdir;
    file = dir / file;
  }
  // The task stays pending (nothing is written) until the answer: a daemon stopped meanwhile
  // leaves it to the next, which reads the file again.
  options_.read_items(file, RunIdentity(options_.task_user, options_.task_uids, Value(run.ctx.id)),
                      [io = &io_, this, alive = alive_, id = run.ctx.id,
                       task](Result<std::vector<dag::Value>> items) {
                        asio::post(*io,
                                   [this, alive, id, task, items = std::move(items)]() mutable {
                                     if (*alive) OnItemsRead(id, task, std::move(items));
                                   });
                      });
}

void Scheduler::OnItemsRead(RunId run_id, TaskId task, Result<std::vector<dag::Value>> items) {
  if (stopping_ && stop_mode_ == StopMode::kLeave) return;
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;
  Run& run = *it->second;
  // Cancelled or marked while its file was read.
  if (run.plan.state(task) != TaskState::kPending || run.plan.IsExpanded(task)) return;
  if (!items.ok()) {
    // The reader's words name the file ("for_each file '...': ...").
    FinishTask(run, task, TaskState::kFailed, run.attempts[Index(task)], std::nullopt,
               items.message());
  } else {
    Expand(run, task, std::move(items).value());
  }
  Pump(run);
  StartStartable();
  MaybeFinishRun(run);
}

void Scheduler::Expand(Run& run, TaskId task, std::vector<dag::Value> items) {
  const int attempt = run.attempts[Index(task)];
  if (items.empty()) {
    FinishTask(run, task, TaskState::kSkipped, attempt, std::nullopt, "for_each has no items");
    return;
  }
  std::string json = "[";
  for (size_t k = 0; k < items.size(); ++k) {
    std::string item = dag::ItemJson(items[k]);
    // PostgreSQL's text holds no NUL character.
    if (item.find("\\u0000") != std::string::npos) {
      FinishTask(run, task, TaskState::kFailed, attempt, std::nullopt,
                 "for_each: item " + std::to_string(k) +
                     " contains a NUL character, which kiln cannot store");
      return;
    }
    if (k > 0) json += ',';
    json += item;
  }
  json += ']';
  const size_t count = items.size();
  run.plan.Expand(task, count, nullptr);
  run.Grow(count);
  run.instances.reserve(run.instances.size() + count);
  run.first_instance[Index(task)] = static_cast<TaskId>(run.tasks() + run.instances.size());
  for (size_t k = 0; k < count; ++k) {
    run.instances.push_back(Run::Instance{task, static_cast<uint32_t>(k), std::move(items[k])});
  }
  if (run.spec(task).max_parallel > 0) run.windows[Index(task)].limit = run.spec(task).max_parallel;
  TaskUpdate update{run.ctx.id,
                    run.name(task),
                    attempt,
                    TaskState::kRunning,
                    clock_.Now(),
                    std::nullopt,
                    std::nullopt,
                    std::nullopt,
                    std::to_string(count) + (count == 1 ? " instance" : " instances")};
  update.expand = Expansion{std::move(json)};
  TaskExtra extra;
  extra.task = task;
  Record(std::move(update), std::move(extra));
}

// A resumed run: the places its instances under way hold (pending ones take theirs in Pump).
void Scheduler::OpenWindows(Run& run) {
  for (size_t k = 0; k < run.instances.size(); ++k) {
    const TaskId parent = run.instances[k].parent;
    const int limit = run.spec(parent).max_parallel;
    if (limit <= 0) continue;
    Run::Window& w = run.windows[Index(parent)];
    w.limit = limit;
    const TaskState state = run.plan.state(static_cast<TaskId>(run.tasks() + k));
    if (!dag::IsTerminal(state) && state != TaskState::kPending) ++w.open;
  }
}

bool Scheduler::TakePlace(Run& run, TaskId instance) {
  const Run::Instance* i = run.instance(instance);
  if (i == nullptr) return true;
  auto it = run.windows.find(Index(i->parent));
  if (it == run.windows.end()) return true;
  Run::Window& w = it->second;
  if (w.open < w.limit) {
    ++w.open;
    return true;
  }
  w.held.push_back(instance);
  return false;
}

// An instance ended (from `before`): the place it held goes to the next one held back.
void Scheduler::LeavePlace(Run& run, TaskId instance, TaskState before) {
  auto it = run.windows.find(Index(run.instance(instance)->parent));
  if (it == run.windows.end()) return;
  Run::Window& w = it->second;
  if (before == TaskState::kPending) {
    // Ended while held back (a mark): it held no place. Rare: an operator's action.
    std::erase(w.held, instance);
    return;
  }
  --w.open;
  while (!w.held.empty() && w.open < w.limit) {
    const TaskId next = w.held.front();
    w.held.pop_front();
    if (run.plan.state(next) != TaskState::kPending) continue;
    const dag::TaskSpec& spec = run.spec(next);
    ++w.open;
    Queue(run, Ticket{run.ctx.id, next, spec.pool, spec.slots, spec.priority, run.ctx.background});
  }
}

std::optional<TaskId> Scheduler::FindUnit(RunId run_id, const std::string& name) const {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return std::nullopt;
  const Run& run = *it->second;
  if (auto task = run.pipeline().dag.Find(name)) return task;
  const auto ref = dag::ParseInstanceName(name);
  if (!ref) return std::nullopt;
  auto parent = run.pipeline().dag.Find(ref->task);
  auto first = parent ? run.first_instance.find(Index(*parent)) : run.first_instance.end();
  if (first == run.first_instance.end()) return std::nullopt;
  const size_t unit = Index(first->second) + ref->index;
  if (unit >= run.plan.units() || run.name(static_cast<TaskId>(unit)) != name) return std::nullopt;
  return static_cast<TaskId>(unit);
}

std::string Scheduler::InstancesEnded(const Run& run, TaskId parent) const {
  const RunPlan::Mapped* m = run.plan.mapped(parent);
  if (m == nullptr) return "its instances ended";
  const size_t failed = m->ended - m->succeeded - m->skipped;
  std::string out =
      std::to_string(m->total) + " instances: " + std::to_string(m->succeeded) + " succeeded";
  if (failed > 0) out += ", " + std::to_string(failed) + " did not";
  if (m->skipped > 0) out += ", " + std::to_string(m->skipped) + " skipped";
  return out;
}

}  // namespace kiln::scheduler
