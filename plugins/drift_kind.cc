// kind = "drift": how far the current data moved from a reference, per numeric column
// (docs/pipelines.md). Exit codes of `kiln task drift`: 0 no drift (or on_drift = "warn" or
// "trigger"), 1 drift with on_drift = "fail", 2 the data cannot be read or compared. With
// on_drift = "trigger" its report names the drifted columns and the pipeline to run; the daemon
// reads it from the attempt's results and creates the run (daemon/drift_trigger.cc).
#include <array>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "common/text.h"
#include "common/time.h"
#include "dag/validate.h"
#include "plugins/drift_stats.h"
#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

using Type = dag::Value::Type;

constexpr std::array<std::string_view, 8> kKeys = {"columns",  "cooldown",  "current",   "method",
                                                   "on_drift", "reference", "threshold", "trigger"};

struct DriftOptions {
  DriftRequest request;
  bool warn = false;
  std::string trigger;   // with on_drift = "trigger": the pipeline to run
  Duration cooldown{0};  // at most one triggered run per this long
};

class DriftReader {
 public:
  DriftReader(std::string field, Problems& problems)
      : field_(std::move(field)), problems_(problems) {}

  DriftOptions Read(const dag::Value& options) {
    DriftOptions d;
    d.request.reference = Path(options, "reference");
    d.request.current = Path(options, "current");
    if (const dag::Value* columns = options.Find("columns")) ReadColumns(*columns, d.request);
    if (const dag::Value* m = options.Find("method")) {
      if (Expect(*m, m->type == Type::kString, "method", "a string")) {
        if (m->string == "psi") {
          d.request.method = DriftMethod::kPsi;
        } else if (m->string == "ks") {
          d.request.method = DriftMethod::kKs;
        } else {
          Problem("method", m->loc, "unknown method '" + m->string + "' (accepted: ks, psi)");
        }
      }
    }
    if (const dag::Value* t = options.Find("threshold")) {
      if (Expect(*t, t->is_number(), "threshold", "a number")) {
        d.request.threshold = t->AsNumber();
        if (!(d.request.threshold > 0)) Problem("threshold", t->loc, "must be above 0");
      }
    }
    bool trigger = false;
    if (const dag::Value* o = options.Find("on_drift")) {
      if (Expect(*o, o->type == Type::kString, "on_drift", "a string")) {
        if (o->string != "fail" && o->string != "warn" && o->string != "trigger") {
          Problem("on_drift", o->loc,
                  "unknown on_drift '" + o->string + "' (accepted: fail, trigger, warn)");
        }
        d.warn = o->string == "warn";
        trigger = o->string == "trigger";
      }
    }
    ReadTrigger(options, trigger, d);
    return d;
  }

 private:
  void ReadTrigger(const dag::Value& options, bool trigger, DriftOptions& d) {
    const dag::Value* target = options.Find("trigger");
    const dag::Value* cooldown = options.Find("cooldown");
    if (!trigger) {
      for (const dag::Value* v : {target, cooldown}) {
        if (v != nullptr) {
          Problem(v->key, v->key_loc,
                  v->key +
                      " goes with on_drift = \"trigger\"; set it or "
                      "remove " +
                      v->key);
        }
      }
      return;
    }
    if (target == nullptr) {
      Problem("on_drift", options.Find("on_drift")->loc,
              "on_drift = \"trigger\" needs trigger: the name of the pipeline to run");
    } else if (Expect(*target, target->type == Type::kString, "trigger", "a pipeline name")) {
      if (!dag::IsValidPipelineName(target->string)) {
        Problem("trigger", target->loc,
                "invalid pipeline name '" + target->string +
                    "'; use 1-64 characters from a-z, 0-9, '_', '.', '-', starting with a "
                    "letter or digit");
      }
      d.trigger = target->string;
    }
    if (cooldown != nullptr && Expect(*cooldown, cooldown->type == Type::kString, "cooldown",
                                      "a duration such as \"1d\"")) {
      auto parsed = ParseDuration(cooldown->string);
      if (!parsed.ok()) {
        Problem("cooldown", cooldown->loc, parsed.message());
      } else if (*parsed < Duration(0)) {
        Problem("cooldown", cooldown->loc, "must not be negative");
      } else {
        d.cooldown = *parsed;
      }
    }
  }

  void Problem(const std::string& key, dag::SourceLoc loc, std::string message) {
    problems_.Add(key.empty() ? field_ : field_ + "." + key, loc, std::move(message));
  }
  bool Expect(const dag::Value& v, bool ok, const std::string& key, std::string_view what) {
    if (!ok)
      Problem(key, v.loc, "expected " + std::string(what) + ", got " + std::string(v.Phrase()));
    return ok;
  }
  std::string Path(const dag::Value& options, const std::string& key) {
    const dag::Value* v = options.Find(key);
    if (v == nullptr) {
      Problem("", {}, "no " + key + "; set " + key + " to a CSV or JSON lines file");
      return "";
    }
    if (!Expect(*v, v->type == Type::kString, key, "a string (a path)")) return "";
    if (v->string.empty()) Problem(key, v->loc, "empty path");
    return v->string;
  }
  void ReadColumns(const dag::Value& columns, DriftRequest& r) {
    if (!Expect(columns, columns.type == Type::kArray, "columns", "an array of column names")) {
      return;
    }
    if (columns.items.empty())
      Problem("columns", columns.loc, "empty; leave it out to compare every numeric column");
    for (size_t i = 0; i < columns.items.size(); ++i) {
      const dag::Value& c = columns.items[i];
      const std::string key = "columns[" + std::to_string(i) + "]";
      if (Expect(c, c.type == Type::kString, key, "a string")) r.columns.push_back(c.string);
    }
  }

  std::string field_;
  Problems& problems_;
};

std::string Number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", value);
  return buf;
}

// <run folder>/.kiln/<task>/drift.json: every column's statistic.
nlohmann::json ReportJson(const DriftOptions& d, const std::vector<ColumnDrift>& cols) {
  const DriftRequest& r = d.request;
  nlohmann::json j = {{"reference", r.reference},
                      {"current", r.current},
                      {"method", r.method == DriftMethod::kPsi ? "psi" : "ks"},
                      {"threshold", r.threshold},
                      {"columns", nlohmann::json::array()}};
  for (const ColumnDrift& c : cols) {
    j["columns"].push_back({{"column", c.column},
                            {"statistic", c.statistic},
                            {"drifted", c.drifted},
                            {"reference_values", c.reference_values},
                            {"current_values", c.current_values}});
    if (c.drifted) j["drifted"].push_back(c.column);
  }
  if (!j.contains("drifted")) j["drifted"] = nlohmann::json::array();
  if (!d.trigger.empty()) {
    j["trigger"] = d.trigger;
    j["cooldown_ms"] = d.cooldown.count();
  }
  return j;
}

bool Keep(const TaskContext& ctx, const nlohmann::json& report) {
  const std::string text =
      report.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (Status s = WriteReport(ctx, "drift.json", text); !s.ok()) {
    *ctx.out << "kiln drift: warning: " << s.message() << '\n';
    return false;
  }
  return true;
}

class DriftKind final : public Kind {
 public:
  std::string_view Name() const override { return "drift"; }
  std::span<const std::string_view> Keys() const override { return kKeys; }

  void Check(const dag::TaskSpec& task, const std::string& field,
             Problems& problems) const override {
    DriftReader(field, problems).Read(task.options);
  }

  std::vector<std::pair<std::string, dag::SourceLoc>> Starts(
      const dag::Value& options) const override {
    const dag::Value* on_drift = options.Find("on_drift");
    const dag::Value* target = options.Find("trigger");
    if (on_drift == nullptr || on_drift->type != Type::kString || on_drift->string != "trigger" ||
        target == nullptr || target->type != Type::kString) {
      return {};
    }
    return {{target->string, target->loc}};
  }

  int Run(const dag::Value& options, const TaskContext& ctx) const override {
    std::ostream& out = *ctx.out;
    std::vector<dag::Diagnostic> found;
    Problems problems(found);
    const std::string field = "tasks." + (ctx.task_id.empty() ? std::string("drift") : ctx.task_id);
    const DriftOptions d = DriftReader(field, problems).Read(options);
    if (!found.empty()) {
      for (const auto& p : found) out << "kiln drift: " << p.field << ": " << p.message << '\n';
      Keep(ctx, {{"error", found.front().message}});
      return 2;
    }
    auto columns = ComputeDrift(d.request);
    if (!columns.ok()) {
      out << "kiln drift: " << columns.message() << '\n';
      Keep(ctx, {{"error", columns.message()}});
      return 2;
    }
    const char* method = d.request.method == DriftMethod::kPsi ? "psi" : "ks";
    std::vector<std::string> drifted;
    for (const ColumnDrift& c : *columns) {
      if (c.drifted) drifted.push_back(c.column);
    }
    out << "kiln drift: " << d.request.current << " against " << d.request.reference << ", "
        << method << " above " << Number(d.request.threshold) << ": "
        << (drifted.empty()
                ? std::string("no column drifted")
                : std::to_string(drifted.size()) + " of " + std::to_string(columns->size()) +
                      (columns->size() == 1 ? " column" : " columns") + " drifted")
        << '\n';
    for (const ColumnDrift& c : *columns) {
      out << "  " << c.column << ": " << method << " " << Number(c.statistic)
          << (c.drifted ? " drifted" : "") << " (" << c.reference_values << " reference values, "
          << c.current_values << " current)\n";
    }
    if (!drifted.empty() && !d.trigger.empty()) {
      out << "kiln drift: asking for a run of '" << d.trigger << "'"
          << (d.cooldown > Duration(0)
                  ? " unless one was triggered in the last " + FormatDuration(d.cooldown)
                  : std::string())
          << '\n';
    }
    // A trigger reaches the daemon through the report: without it, the drift is not asked for.
    if (!Keep(ctx, ReportJson(d, *columns)) && !drifted.empty() && !d.trigger.empty()) return 2;
    return drifted.empty() || d.warn || !d.trigger.empty() ? 0 : 1;
  }
};

}  // namespace

std::unique_ptr<Kind> MakeDriftKind() { return std::make_unique<DriftKind>(); }

}  // namespace kiln::plugins
