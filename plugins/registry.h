// The task kinds this binary knows: shell (the format's own) and the ML lifecycle kinds.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "dag/kinds.h"
#include "plugins/api.h"

namespace kiln::plugins {

class Registry final : public dag::KindCatalog {
 public:
  Registry();  // shell only
  void Add(std::unique_ptr<Kind> kind);
  // nullptr for shell and for unknown kinds.
  const Kind* Find(std::string_view name) const;

  std::vector<std::string_view> Names() const override;
  bool Has(std::string_view kind) const override;
  // Reports each key that is neither common nor the kind's as unknown, then the kind's checks.
  void Check(const dag::TaskSpec& task, const dag::PipelineSpec& pipeline,
             std::vector<dag::Diagnostic>& out) const override;
  std::vector<int> SkipExitCodes(std::string_view kind) const override;
  dag::Execution ExecutionOf(std::string_view kind) const override;

  // The program of one attempt of a task of kind `kind` (not shell), its keys rendered:
  // {kiln, "task", kind, "--options", JSON}.
  Result<std::vector<std::string>> Argv(std::string_view kind, const dag::Value& options,
                                        const std::string& kiln) const;

 private:
  std::vector<std::unique_ptr<Kind>> kinds_;
};

// Every built-in kind.
const Registry& Builtins();

}  // namespace kiln::plugins
