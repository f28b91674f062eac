// What validation needs to know about task kinds other than the format's own `shell`. The plugins
// module implements it (plugins/registry.h); dag/ knows no kind but shell.
#pragma once

#include <string_view>
#include <vector>

#include "dag/spec.h"

namespace kiln::dag {

class KindCatalog {
 public:
  virtual ~KindCatalog() = default;
  // Every kind's name, sorted; "shell" among them.
  virtual std::vector<std::string_view> Names() const = 0;
  // Whether `kind` is known.
  virtual bool Has(std::string_view kind) const = 0;
  // Checks the keys of a task of a known kind other than shell (task.options and the common keys
  // it gives a meaning to), adding one Diagnostic per problem (file left empty; field a dotted
  // path like "tasks.check.columns.age.min"; loc where it was written).
  virtual void Check(const TaskSpec& task, const PipelineSpec& pipeline,
                     std::vector<Diagnostic>& out) const = 0;
  // Exit codes of a known kind's process that end its task skipped (the loader sets them as the
  // task's skip_exit_codes).
  virtual std::vector<int> SkipExitCodes(std::string_view /*kind*/) const { return {}; }
  // How a known kind's tasks run (the loader sets it as the task's execution).
  virtual Execution ExecutionOf(std::string_view /*kind*/) const { return Execution::kProcess; }
};

// Knows shell only: for specs checked without plugins (unit tests of dag/ and config/).
const KindCatalog& ShellOnly();

}  // namespace kiln::dag
