// Internal to plugins/: the built-in kinds, each in a file of its own.
#pragma once

#include <memory>
#include <string>

#include "plugins/api.h"

namespace kiln::plugins {

// Writes `text` to <run folder>/.kiln/<task>/<name> (folders made), following no link; a
// report of the attempt before is replaced whole. Nothing to do without a run folder.
Status WriteReport(const TaskContext& ctx, const std::string& name, const std::string& text);

std::unique_ptr<Kind> MakeApprovalKind();  // approval_kind.cc
std::unique_ptr<Kind> MakeCheckKind();     // check_kind.cc
std::unique_ptr<Kind> MakeDriftKind();     // drift_kind.cc
std::unique_ptr<Kind> MakeGateKind();      // gate_kind.cc
std::unique_ptr<Kind> MakeWaitKind();      // wait_kind.cc

}  // namespace kiln::plugins
