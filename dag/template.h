// {{ name }} templates in commands, argv and env values.
#pragma once

#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "dag/spec.h"

namespace kiln::dag {

// The names a template may use for a pipeline: params.<each declared param>, run.id, run.dir,
// run.logical_date, run.data_interval_start, run.data_interval_end, run.triggered_by,
// pipeline.name, task.id, task.attempt.
std::set<std::string> TemplateNames(const PipelineSpec& spec);

// The names a template refers to, in order (repeats kept); malformed parts are left out.
std::vector<std::string_view> TemplateRefs(std::string_view text);

// {{ secrets.NAME }}: a secret declared in kiln.toml, allowed in env values and argv only.
inline constexpr std::string_view kSecretsPrefix = "secrets.";
// The secrets a template names (NAME of each {{ secrets.NAME }}), in order, repeats kept.
std::vector<std::string_view> SecretNamesIn(std::string_view text);
// "secrets.NAME": the template name a secret's value is rendered under.
std::string SecretRef(std::string_view name);

// Problems in one template string: unknown names, "{{" without "}}", empty names. Each message is
// complete, e.g. "unknown template name 'params.epoch' (known: params.epochs, run.id, ...)".
std::vector<std::string> CheckTemplate(std::string_view text, const std::set<std::string>& known);

enum class Quoting {
  kShell,  // every substituted value is shell-quoted (for `command`)
  kNone,   // byte for byte (for `argv` items and env values)
};

// Values for every name, e.g. {"params.dataset", "data/x.csv"}, {"run.id", "42"}.
using TemplateValues = std::map<std::string, std::string, std::less<>>;

// Substitutes every {{ name }}. Unknown names are an error (validation should have caught them).
Result<std::string> Render(std::string_view text, const TemplateValues& values, Quoting quoting);

// POSIX sh single-quoting: abc -> 'abc', it's -> 'it'\''s'. Always quotes, even safe text.
std::string ShellQuote(std::string_view value);

}  // namespace kiln::dag
