// kind = "gate": promote only what beats the champion (docs/pipelines.md). Exit codes of
// `kiln task gate`: 0 every condition holds, 3 one does not (the task ends skipped, so what
// follows it with the default rule is skipped), 2 the metrics cannot be read or a condition
// cannot be evaluated. The champion's metrics come in its keys, added by the daemon when the
// attempt starts ("champion": {"version": N, "metrics": {...}}); its report keeps every number.
#include <array>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>

#include "dag/validate.h"
#include "plugins/collect.h"
#include "plugins/gate_expr.h"
#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

using Type = dag::Value::Type;
using json = nlohmann::ordered_json;

constexpr std::array<std::string_view, 4> kKeys = {"artifact", "model", "promote", "require"};

struct GateOptions {
  std::string model;
  std::string metrics;
  std::vector<std::string> require;
  std::string artifact;
  bool promote = false;
};

class GateReader {
 public:
  GateReader(std::string field, Problems& problems)
      : field_(std::move(field)), problems_(problems) {}

  GateOptions Read(const dag::Value& options, const dag::TaskSpec* task) {
    GateOptions g;
    const dag::Value* model = options.Find("model");
    if (model == nullptr) {
      problems_.Add(field_, {}, "no model; set model to the registered model's name");
    } else if (Expect(*model, model->type == Type::kString, "model", "a string")) {
      if (!dag::IsValidPipelineName(model->string)) {
        problems_.Add(field_ + ".model", model->loc,
                      "invalid model name '" + model->string +
                          "'; use 1-64 characters from a-z, 0-9, '_', '.', '-', starting with a "
                          "letter or digit");
      }
      g.model = model->string;
    }
    if (task != nullptr && task->metrics.empty()) {
      problems_.Add(field_, {},
                    "no metrics; set metrics to the JSON file of numbers the gate decides on");
    }
    if (const dag::Value* m = options.Find("metrics"); m != nullptr && m->type == Type::kString) {
      g.metrics = m->string;
    }
    const dag::Value* require = options.Find("require");
    if (require == nullptr) {
      problems_.Add(
          field_, {},
          "no require; list the conditions, e.g. require = [\"accuracy >= champion.accuracy\"]");
    } else if (Expect(*require, require->type == Type::kArray, "require",
                      "an array of conditions")) {
      if (require->items.empty()) {
        problems_.Add(field_ + ".require", require->loc, "empty; list at least one condition");
      }
      for (size_t i = 0; i < require->items.size(); ++i) {
        const dag::Value& c = require->items[i];
        const std::string key = "require[" + std::to_string(i) + "]";
        if (!Expect(c, c.type == Type::kString, key, "a string")) continue;
        // A template is checked once rendered, when the gate runs.
        if (c.string.find("{{") == std::string::npos) {
          if (auto parsed = ParseCondition(c.string); !parsed.ok()) {
            problems_.Add(field_ + "." + key, c.loc, parsed.message());
          }
        }
        g.require.push_back(c.string);
      }
    }
    if (const dag::Value* p = options.Find("promote")) {
      if (Expect(*p, p->type == Type::kBool, "promote", "true or false")) g.promote = p->boolean;
    }
    if (const dag::Value* a = options.Find("artifact")) {
      if (Expect(*a, a->type == Type::kString, "artifact", "a string (a path)")) {
        if (a->string.empty()) problems_.Add(field_ + ".artifact", a->loc, "empty path");
        g.artifact = a->string;
      }
    }
    if (g.promote && options.Find("artifact") == nullptr) {
      problems_.Add(field_ + ".promote", options.Find("promote")->loc,
                    "promote = true needs artifact: the file that becomes the new version");
    }
    return g;
  }

 private:
  bool Expect(const dag::Value& v, bool ok, const std::string& key, std::string_view what) {
    if (!ok) {
      problems_.Add(field_ + "." + key, v.loc,
                    "expected " + std::string(what) + ", got " + std::string(v.Phrase()));
    }
    return ok;
  }

  std::string field_;
  Problems& problems_;
};

// {"path": absolute, "sha256", "bytes"} of the artifact to register, read by the collector's
// rules: beneath the run folder or the pipeline's (the working folder), as the daemon will.
Result<json> HashArtifact(const std::string& path, const TaskContext& ctx) {
  std::error_code ec;
  CollectSpec spec;
  spec.outputs = {std::filesystem::absolute(path, ec).lexically_normal().string()};
  spec.pipeline_dir = std::filesystem::current_path(ec).string();
  spec.run_dir = ctx.run_dir.string();
  auto results = CollectResults(spec);
  if (!results.ok()) return Status::Error("artifact " + results.message().substr(7));
  json r = json::parse(results.value(), nullptr, false);
  if (!r.is_object() || r["outputs"].empty())
    return Status::Error("artifact '" + path + "' cannot be read");
  return r["outputs"][0];
}

std::string Number(double value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", value);
  return buf;
}

json MetricsJson(const Metrics& m) {
  json j = json::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

class GateKind final : public Kind {
 public:
  std::string_view Name() const override { return "gate"; }
  std::span<const std::string_view> Keys() const override { return kKeys; }
  std::vector<int> SkipExitCodes() const override { return {kGateFailed}; }

  void Check(const dag::TaskSpec& task, const std::string& field,
             Problems& problems) const override {
    GateReader(field, problems).Read(task.options, &task);
  }

  int Run(const dag::Value& options, const TaskContext& ctx) const override {
    std::ostream& out = *ctx.out;
    std::vector<dag::Diagnostic> found;
    Problems problems(found);
    const GateOptions g = GateReader("gate", problems).Read(options, nullptr);
    auto fail = [&](const std::string& message) {
      out << "kiln gate: " << message << '\n';
      Keep(ctx, {{"model", g.model}, {"decision", "error"}, {"error", message}});
      return 2;
    };
    if (!found.empty()) return fail(found.front().field + ": " + found.front().message);
    if (g.metrics.empty()) return fail("no metrics file to decide on");
    auto metrics = ReadMetricsFile(g.metrics);
    if (!metrics.ok()) return fail("metrics file '" + g.metrics + "' " + metrics.message());
    std::optional<Metrics> champion;
    int64_t champion_version = 0;
    if (const dag::Value* c = options.Find("champion"); c != nullptr && c->type == Type::kTable) {
      champion.emplace();
      if (const dag::Value* v = c->Find("version")) champion_version = v->integer;
      if (const dag::Value* m = c->Find("metrics")) {
        for (const dag::Value& item : m->items) {
          if (item.is_number()) (*champion)[item.key] = item.AsNumber();
        }
      }
    }
    json conditions = json::array();
    size_t held = 0;
    std::string lines;
    for (const std::string& text : g.require) {
      auto condition = ParseCondition(text);
      if (!condition.ok()) return fail(condition.message());
      auto verdict = Evaluate(*condition, *metrics, champion ? &*champion : nullptr);
      if (!verdict.ok())
        return fail("'" + text + "': " + verdict.message() + " (metrics file '" + g.metrics + "')");
      held += verdict->holds ? 1 : 0;
      lines += "  " + condition->text + ": " + Number(verdict->left) + " " + condition->op + " " +
               (verdict->right ? Number(*verdict->right) : std::string("(no champion yet)")) +
               (verdict->holds ? " holds" : " fails") + "\n";
      conditions.push_back({{"condition", condition->text},
                            {"value", verdict->left},
                            {"against", verdict->right ? json(*verdict->right) : json()},
                            {"holds", verdict->holds}});
    }
    const bool pass = held == g.require.size();
    json artifact;
    if (pass && g.promote) {
      // Hashed here, as the task's user; the daemon keeps a copy only if it still matches.
      auto hashed = HashArtifact(g.artifact, ctx);
      if (!hashed.ok()) return fail(hashed.message());
      artifact = std::move(hashed).value();
    }
    out << "kiln gate: model " << g.model << ", "
        << (champion ? "champion version " + std::to_string(champion_version)
                     : std::string("no champion yet"))
        << ": " << held << " of " << g.require.size() << " conditions hold; "
        << (pass
                ? (g.promote ? "passed; the daemon registers a new version of the model" : "passed")
                : "not passed: the task is skipped")
        << '\n'
        << lines;
    json report = {{"model", g.model},
                   {"decision", pass ? "pass" : "fail"},
                   {"conditions", std::move(conditions)},
                   {"metrics", MetricsJson(*metrics)},
                   {"champion", champion ? json{{"version", champion_version},
                                                {"metrics", MetricsJson(*champion)}}
                                         : json()},
                   {"promote", g.promote}};
    if (!artifact.is_null()) report["artifact"] = std::move(artifact);
    // What the daemon registers comes from this report: without it, no pass.
    if (!Keep(ctx, report) && pass && g.promote) return 2;
    return pass ? 0 : kGateFailed;
  }

 private:
  static constexpr int kGateFailed = 3;

  static bool Keep(const TaskContext& ctx, const json& report) {
    const std::string text = report.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    if (Status s = WriteReport(ctx, "gate.json", text); !s.ok()) {
      *ctx.out << "kiln gate: " << s.message() << '\n';
      return false;
    }
    return true;
  }
};

}  // namespace

std::unique_ptr<Kind> MakeGateKind() { return std::make_unique<GateKind>(); }

}  // namespace kiln::plugins
