// Values given as text: durations, RFC 3339 instants, and params (`-p name=value` lines checked
// against declared params of each type).
#include <string>
#include <utility>
#include <vector>

#include "common/time.h"
#include "dag/params.h"
#include "fuzz/check.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  using kiln::fuzz::Check;
  const std::string_view text = kiln::fuzz::Text(data, size);

  if (auto d = kiln::ParseDuration(text); d.ok()) {
    Check(*d >= kiln::Duration::zero(), "a duration is not negative");
    auto again = kiln::ParseDuration(kiln::FormatDuration(*d));
    Check(again.ok() && *again == *d, "a duration reads back from its shortest form");
  }
  if (auto t = kiln::ParseRfc3339(text); t.ok()) {
    auto again = kiln::ParseRfc3339(kiln::FormatRfc3339Millis(*t));
    Check(again.ok(), "an instant reads back");
  }

  kiln::dag::PipelineSpec spec;
  spec.params = {
      {"s", std::string("x"), {}}, {"i", int64_t{3}, {}}, {"f", 0.5, {}}, {"b", false, {}}};
  std::vector<std::pair<std::string, std::string>> overrides;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    auto split = kiln::dag::SplitAssignment(text.substr(start, end - start));
    if (split.ok()) overrides.push_back(*split);
    start = end + 1;
  }
  std::string failed;
  auto resolved = kiln::dag::ResolveParams(spec, overrides, &failed);
  if (resolved.ok()) {
    Check(resolved->size() == spec.params.size(), "every declared param has a value");
    for (const auto& [name, value] : *resolved) {
      (void)name;
      Check(kiln::dag::TypeName(value) != "", "every value has a type");
      (void)kiln::dag::ToText(value);
    }
  } else {
    Check(!resolved.message().empty(), "a refusal says why");
  }
  return 0;
}
