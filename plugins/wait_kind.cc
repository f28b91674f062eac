// kind = "wait": wait for the world without holding a slot (docs/pipelines.md). The task runs no
// process: when it becomes ready the scheduler puts it in the `waiting` state and the daemon
// checks, every `every`, that a file exists, that a URL answers 2xx, or that an instant has
// come; it succeeds then, or fails when its timeout passes first.
//
//   for = "file"  path = "..."   (a regular file; relative to the pipeline's folder)
//   for = "http"  url = "http(s)://..."
//   for = "time"  at = "<RFC 3339 instant>"
//   every = "30s"                (default; at least 100ms)
#include <ostream>

#include "common/time.h"
#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

using Type = dag::Value::Type;

constexpr std::string_view kKeys[] = {"at", "every", "for", "path", "url"};
constexpr Duration kMinEvery = std::chrono::milliseconds(100);

// Which key each `for` needs.
std::string_view TargetKey(std::string_view what) {
  if (what == "file") return "path";
  if (what == "http") return "url";
  if (what == "time") return "at";
  return "";
}

class WaitKind final : public Kind {
 public:
  std::string_view Name() const override { return "wait"; }
  std::span<const std::string_view> Keys() const override { return kKeys; }

  void Check(const dag::TaskSpec& task, const std::string& field,
             Problems& problems) const override {
    const dag::Value& o = task.options;
    auto string = [&](std::string_view key) -> const dag::Value* {
      const dag::Value* v = o.Find(key);
      if (v == nullptr) return nullptr;
      if (v->type != Type::kString) {
        problems.Add(field + "." + std::string(key), v->loc,
                     "expected a string, got " + std::string(v->Phrase()));
        return nullptr;
      }
      return v;
    };
    const dag::Value* what = string("for");
    std::string_view needed;
    if (o.Find("for") == nullptr) {
      problems.Add(field, task.loc,
                   "a wait needs for = \"file\", \"http\" or \"time\" (what it waits for)");
    } else if (what != nullptr) {
      needed = TargetKey(what->string);
      if (needed.empty()) {
        problems.Add(field + ".for", what->loc,
                     "unknown wait '" + what->string + "' (accepted: file, http, time)");
      }
    }
    for (std::string_view key : {"path", "url", "at"}) {
      const dag::Value* v = string(key);
      const bool given = o.Find(key) != nullptr;
      if (!needed.empty() && key == needed && !given) {
        problems.Add(field, task.loc,
                     "for = \"" + what->string + "\" needs " + std::string(key) + " = \"" +
                         (key == "path"  ? std::string("/data/{{ run.logical_date }}/_SUCCESS")
                          : key == "url" ? std::string("http://host/ready")
                                         : std::string("{{ run.data_interval_end }}")) +
                         "\"");
      } else if (!needed.empty() && key != needed && given) {
        problems.Add(field + "." + std::string(key), o.Find(key)->loc,
                     std::string(key) + " is for a wait with for = \"" +
                         (key == "path"  ? "file"
                          : key == "url" ? "http"
                                         : "time") +
                         "\"; this one waits for " + what->string);
      }
      if (v == nullptr || key != needed || v->string.find("{{") != std::string::npos) continue;
      if (v->string.empty()) {
        problems.Add(field + "." + std::string(key), v->loc, "must not be empty");
      } else if (key == "url" && !v->string.starts_with("http://") &&
                 !v->string.starts_with("https://")) {
        problems.Add(field + ".url", v->loc,
                     "'" + v->string + "' is not an http:// or https:// URL");
      } else if (key == "at") {
        auto at = ParseRfc3339(v->string);
        if (!at.ok()) problems.Add(field + ".at", v->loc, at.message());
      }
    }
    if (const dag::Value* every = string("every")) {
      auto d = ParseDuration(every->string);
      if (!d.ok()) {
        problems.Add(field + ".every", every->loc, d.message());
      } else if (*d < kMinEvery) {
        problems.Add(field + ".every", every->loc,
                     "must be at least 100ms, got \"" + every->string + "\"");
      }
    }
  }

  int Run(const dag::Value& /*options*/, const TaskContext& ctx) const override {
    if (ctx.out != nullptr) {
      *ctx.out << "kiln task wait: a wait is checked by the daemon, not run as a process\n";
    }
    return 2;
  }
  dag::Execution Runs() const override { return dag::Execution::kWait; }
};

}  // namespace

std::unique_ptr<Kind> MakeWaitKind() { return std::make_unique<WaitKind>(); }

}  // namespace kiln::plugins
