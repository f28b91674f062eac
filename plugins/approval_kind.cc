// kind = "approval": a person decides (docs/pipelines.md). The task runs no process and holds no
// pool slot: when it becomes ready the scheduler puts it in the `waiting` state until an operator
// approves it (it succeeds) or rejects it (it fails), over the API, the CLI or the web page, or
// until its timeout passes (rejected). It has no keys of its own.
#include <ostream>

#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

class ApprovalKind final : public Kind {
 public:
  std::string_view Name() const override { return "approval"; }
  std::span<const std::string_view> Keys() const override { return {}; }
  void Check(const dag::TaskSpec& /*task*/, const std::string& /*field*/,
             Problems& /*problems*/) const override {}
  int Run(const dag::Value& /*options*/, const TaskContext& ctx) const override {
    if (ctx.out != nullptr) {
      *ctx.out << "kiln task approval: an approval is decided by an operator "
                  "(kiln approve / kiln reject), not run as a process\n";
    }
    return 2;
  }
  dag::Execution Runs() const override { return dag::Execution::kApproval; }
};

}  // namespace

std::unique_ptr<Kind> MakeApprovalKind() { return std::make_unique<ApprovalKind>(); }

}  // namespace kiln::plugins
