// [[notify]] tables, read the same in pipeline files and kiln.toml (dag::NotifySpec).
#include <algorithm>
#include <array>

#include "config/toml_reader.h"
#include "dag/template.h"

namespace kiln::config::internal {

namespace {

constexpr std::array<std::string_view, 3> kNotifyKeys = {"format", "on", "webhook"};

// What a webhook may name besides secrets: it is rendered when a notification is sent.
bool WebhookName(std::string_view name) {
  return name == "pipeline.name" || name == "run.id" || name.starts_with(dag::kSecretsPrefix);
}

}  // namespace

std::vector<dag::NotifySpec> ReadNotify(TomlReader& reader, const toml::node& node,
                                        const std::string& path) {
  std::vector<dag::NotifySpec> out;
  const toml::array* tables = node.as_array();
  if (tables == nullptr) {
    reader.TypeError(node, path, "an array of tables ([[notify]])");
    return out;
  }
  for (size_t i = 0; i < tables->size(); ++i) {
    const std::string field = path + "[" + std::to_string(i) + "]";
    const toml::table* table = reader.Table((*tables)[i], field);
    if (table == nullptr) continue;
    reader.CheckKeys(*table, field, kNotifyKeys);
    dag::NotifySpec spec;
    spec.loc = LocOf((*tables)[i]);
    spec.index = i;
    bool ok = true;
    const toml::node* on = table->get("on");
    const toml::node* webhook = table->get("webhook");
    if (on == nullptr || webhook == nullptr) {
      reader.Error(spec.loc, field,
                   std::string("missing ") + (on == nullptr ? "on" : "webhook") +
                       "; a [[notify]] needs on = [\"failed\", ...] and webhook = \"https://...\"");
      ok = false;
    }
    if (on != nullptr) {
      if (auto events = reader.Strings(*on, field + ".on")) {
        if (events->empty()) {
          reader.Error(LocOf(*on), field + ".on",
                       "empty; list events among success, failed, cancelled, sla_missed, retry");
          ok = false;
        }
        for (const std::string& e : *events) {
          if (std::find(std::begin(dag::kNotifyEvents), std::end(dag::kNotifyEvents), e) ==
              std::end(dag::kNotifyEvents)) {
            reader.Error(LocOf(*on), field + ".on",
                         "unknown event '" + e +
                             "' (accepted: success, failed, cancelled, sla_missed, retry)");
            ok = false;
          } else if (std::find(spec.on.begin(), spec.on.end(), e) != spec.on.end()) {
            reader.Error(LocOf(*on), field + ".on", "'" + e + "' is listed twice");
            ok = false;
          } else {
            spec.on.push_back(e);
          }
        }
      } else {
        ok = false;
      }
    }
    if (webhook != nullptr) {
      spec.webhook_loc = LocOf(*webhook);
      if (auto url = reader.String(*webhook, field + ".webhook")) {
        spec.webhook = *url;
        // Every unknown name, each once, as for a task's templates.
        std::vector<std::string> unknown;
        for (std::string_view ref : dag::TemplateRefs(*url)) {
          if (!WebhookName(ref) &&
              std::find(unknown.begin(), unknown.end(), ref) == unknown.end()) {
            unknown.emplace_back(ref);
          }
        }
        for (const std::string& ref : unknown) {
          reader.Error(spec.webhook_loc, field + ".webhook",
                       "unknown template name '" + ref +
                           "' (a webhook may use secrets.NAME, pipeline.name and run.id)");
        }
        if (unknown.empty() && !url->starts_with("{{") && !url->starts_with("http://") &&
            !url->starts_with("https://")) {
          reader.Error(spec.webhook_loc, field + ".webhook",
                       "'" + *url + "' is not an http:// or https:// URL");
          ok = false;
        }
        ok = ok && unknown.empty();
      } else {
        ok = false;
      }
    }
    if (const toml::node* format = table->get("format")) {
      if (auto f = reader.String(*format, field + ".format")) {
        if (*f != "json" && *f != "slack") {
          reader.Error(LocOf(*format), field + ".format",
                       "unknown format '" + *f + "' (accepted: json, slack)");
          ok = false;
        }
        spec.format = *f;
      }
    }
    if (ok) out.push_back(std::move(spec));
  }
  return out;
}

}  // namespace kiln::config::internal
