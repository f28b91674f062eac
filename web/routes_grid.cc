// What the web page draws: a pipeline's grid of runs × tasks, its graph laid out, and every
// attempt of a run (the timeline). Part of the v1 API like the rest.
#include <unordered_map>

#include "dag/items.h"
#include "web/graph_layout.h"
#include "web/input.h"
#include "web/internal.h"
#include "web/render.h"

namespace kiln::web {

namespace {

constexpr int kDefaultGridRuns = 25;

// Columns: the tasks of the version in use, in pipeline order, then tasks that only older
// versions had, newest run first. One letter per column per run ('.': not in that run). Runs of
// one version share their task list, so each list is mapped to columns once.
json RenderGrid(const scheduler::GridPage& page, const dag::PipelinePtr& current) {
  std::vector<std::string> columns;
  std::unordered_map<std::string, size_t> column_of;
  auto add = [&](const std::string& task) {
    if (column_of.emplace(task, columns.size()).second) columns.push_back(task);
  };
  if (current) {
    for (const auto& t : current->spec.tasks) add(t.id);
  }
  std::unordered_map<const std::vector<std::string>*, std::vector<size_t>> mapped;
  for (const auto& g : page.runs) {
    if (!g.task_ids || mapped.count(g.task_ids.get())) continue;
    std::vector<size_t> at;
    for (const auto& task : *g.task_ids) {
      add(task);
      at.push_back(column_of[task]);
    }
    mapped.emplace(g.task_ids.get(), std::move(at));
  }
  json runs = json::array();
  for (const auto& g : page.runs) {
    std::string letters(columns.size(), dag::kNoTaskLetter);
    if (g.task_ids) {
      const auto& at = mapped[g.task_ids.get()];
      for (size_t i = 0; i < at.size() && i < g.states.size(); ++i) letters[at[i]] = g.states[i];
    }
    json run = RenderRun(g.run, /*with_tasks=*/false);
    run["tasks"] = std::move(letters);
    runs.push_back(std::move(run));
  }
  return {{"tasks", std::move(columns)},
          {"runs", std::move(runs)},
          {"next_cursor", page.next ? json(ToString(*page.next)) : json()}};
}

void Grid(Call& call) {
  if (!AcceptQuery(call, {"limit", "cursor"}) || !CheckPipelineArg(call, call.args[0])) return;
  Paging paging;
  if (Status read = ReadPaging(call.req, paging); !read.ok()) return SendStatus(call.res, read);
  auto page =
      call.ctx.service.Grid(call.args[0], paging.before, paging.limit.value_or(kDefaultGridRuns));
  if (!page.ok()) return SendStatus(call.res, page.status());
  auto current = call.ctx.service.PipelineVersion(call.args[0], std::nullopt);
  SendJson(call.res, 200, RenderGrid(*page, current.ok() ? *current : nullptr));
}

json RenderLayout(const GraphLayout& layout) {
  json nodes = json::array(), edges = json::array();
  for (const auto& n : layout.nodes) {
    nodes.push_back(
        {{"id", n.id}, {"x", n.x}, {"y", n.y}, {"width", n.width}, {"height", n.height}});
  }
  for (const auto& e : layout.edges) {
    edges.push_back({{"from", e.from}, {"to", e.to}, {"path", e.path}});
  }
  return {{"version", layout.version},
          {"width", layout.width},
          {"height", layout.height},
          {"nodes", std::move(nodes)},
          {"edges", std::move(edges)}};
}

void Graph(Call& call) {
  if (!AcceptQuery(call, {"version"}) || !CheckPipelineArg(call, call.args[0])) return;
  std::optional<std::string> version = QueryValue(call.req, "version");
  if (version && (version->size() != 64 ||
                  version->find_first_not_of("0123456789abcdef") != std::string::npos)) {
    return SendStatus(call.res, QueryError("version",
                                           "must be a pipeline version: 64 lower-case "
                                           "hex digits, as in a run's 'version'"));
  }
  auto pipeline = call.ctx.service.PipelineVersion(call.args[0], version);
  if (!pipeline.ok()) return SendStatus(call.res, pipeline.status());
  auto layout = LayoutOf(**pipeline);
  if (!layout.ok()) return SendStatus(call.res, layout.status());
  json out = RenderLayout(**layout);
  // Each node's kind, so that a page asks for what only some kinds have (an approval's decisions).
  for (json& node : out["nodes"]) {
    auto task = (*pipeline)->dag.Find(node["id"].get<std::string>());
    node["kind"] = task ? json((*pipeline)->spec.tasks[Index(*task)].kind) : json();
  }
  SendJson(call.res, 200, out);
}

// The tasks that decided how long the run took: each task costs the time from its first
// attempt's start to its last attempt's end (or now), retries and their waits included. Empty
// when the run's version is not at hand.
json CriticalPathOf(Call& call, RunId id, const std::vector<scheduler::AttemptRecord>& attempts) {
  auto run = call.ctx.service.GetRun(id);
  if (!run.ok()) return json::array();
  auto pipeline = call.ctx.service.PipelineVersion(run->pipeline, run->version_hash);
  if (!pipeline.ok()) return json::array();
  const dag::Dag& dag = (*pipeline)->dag;
  std::vector<Instant> first(dag.size(), Instant::max()), last(dag.size(), Instant::min());
  const Instant now = NowUtc();
  for (const auto& a : attempts) {
    auto task = dag.Find(a.task_id);
    // An instance's attempts ("train[3]") count toward its task, which runs none of its own.
    if (!task) {
      if (auto instance = dag::ParseInstanceName(a.task_id)) task = dag.Find(instance->task);
    }
    if (!task) continue;
    first[Index(*task)] = std::min(first[Index(*task)], a.started_at);
    last[Index(*task)] = std::max(last[Index(*task)], a.ended_at.value_or(now));
  }
  std::vector<int64_t> cost(dag.size(), 0);
  for (size_t i = 0; i < dag.size(); ++i) {
    if (last[i] > first[i]) {
      cost[i] = std::chrono::duration_cast<std::chrono::milliseconds>(last[i] - first[i]).count();
    }
  }
  json path = json::array();
  for (TaskId task : dag::CriticalPath(dag, cost)) path.push_back((*pipeline)->task(task).id);
  return path;
}

void RunAttempts(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto id = RunArg(call, call.args[0]);
  if (!id) return;
  auto attempts = call.ctx.service.RunAttempts(*id);
  if (!attempts.ok()) return SendStatus(call.res, attempts.status());
  json out = json::array();
  for (const auto& a : *attempts) {
    json one = RenderAttempt(a);
    one["task"] = a.task_id;
    out.push_back(std::move(one));
  }
  SendJson(call.res, 200,
           {{"attempts", std::move(out)}, {"critical_path", CriticalPathOf(call, *id, *attempts)}});
}

}  // namespace

std::vector<Route> GridRoutes() {
  return {
      {"GET", "/api/v1/pipelines/{name}/grid", Role::kViewer, Grid},
      {"GET", "/api/v1/pipelines/{name}/graph", Role::kViewer, Graph},
      {"GET", "/api/v1/runs/{id}/attempts", Role::kViewer, RunAttempts},
  };
}

}  // namespace kiln::web
