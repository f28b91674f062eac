// The items of a task with for_each: what each instance's templates and environment see.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "dag/spec.h"
#include "dag/template.h"

namespace kiln::dag {

// An item as text: strings as they are, integers in decimal, floats shortest round-trip,
// true/false. A table has no text ({{ item.KEY }} names its members).
std::string ItemText(const Value& item);

// The item as JSON (KILN_ITEM): a string, number, boolean or object of those.
std::string ItemJson(const Value& item);

// The template values of one instance: item.index, and item (a string, number or boolean item)
// or item.KEY (each member of a table item).
TemplateValues ItemValues(const Value& item, size_t index);

// "train[3]": an instance's name, as the API, the CLI, logs and events show it.
std::string InstanceName(std::string_view task, size_t index);

// The task and index an instance's name holds ("train[3]" -> "train", 3); nullopt unless `name`
// ends in an index of 0..kMaxItems-1 without a leading zero. The task part is not checked.
struct InstanceRef {
  std::string_view task;
  size_t index = 0;
};
std::optional<InstanceRef> ParseInstanceName(std::string_view name);

}  // namespace kiln::dag
