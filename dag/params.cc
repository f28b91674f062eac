#include "dag/params.h"

#include <algorithm>

namespace kiln::dag {

namespace {

std::string Article(std::string_view type) {
  return (type == "integer") ? "an integer" : "a " + std::string(type);
}

}  // namespace

Result<ParamList> ResolveParams(const PipelineSpec& spec,
                                const std::vector<std::pair<std::string, std::string>>& overrides,
                                std::string* failed_name) {
  ParamList out;
  for (const Param& p : spec.params) out.emplace_back(p.name, p.default_value);
  std::vector<std::string> seen;
  for (const auto& override : overrides) {
    const std::string& name = override.first;  // not a structured binding: lambdas capture it
    const std::string& text = override.second;
    if (failed_name) *failed_name = name;
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      return Status::Error(ErrorCode::kInvalidArgument, "param '" + name + "' is given twice");
    }
    seen.push_back(name);
    auto it =
        std::find_if(out.begin(), out.end(), [&](const auto& kv) { return kv.first == name; });
    if (it == out.end()) {
      std::string declared;
      for (const Param& p : spec.params) declared += (declared.empty() ? "" : ", ") + p.name;
      if (declared.empty()) declared = "none";
      return Status::Error(ErrorCode::kInvalidArgument,
                           "undeclared param '" + name + "' (declared: " + declared + ")");
    }
    if (text.find('\0') != std::string::npos) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "param '" + name +
                               "' holds a NUL character (\\u0000), which no command, argument "
                               "or stored text can hold");
    }
    auto converted = ConvertLike(it->second, text);
    if (!converted) {
      return Status::Error(
          ErrorCode::kInvalidArgument,
          "param '" + name + "' expects " + Article(TypeName(it->second)) + ", got '" + text + "'");
    }
    it->second = *converted;
  }
  if (failed_name) failed_name->clear();
  return out;
}

Result<std::pair<std::string, std::string>> SplitAssignment(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "'" + std::string(text) + "' is not of the form name=value");
  }
  return std::pair<std::string, std::string>(std::string(text.substr(0, eq)),
                                             std::string(text.substr(eq + 1)));
}

}  // namespace kiln::dag
