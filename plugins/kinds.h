// Internal to plugins/: the built-in kinds, each in a file of its own.
#pragma once

#include <memory>

#include "plugins/api.h"

namespace kiln::plugins {

std::unique_ptr<Kind> MakeCheckKind();  // check_kind.cc
std::unique_ptr<Kind> MakeDriftKind();  // drift_kind.cc

}  // namespace kiln::plugins
