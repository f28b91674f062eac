// Helpers shared by the client subcommands (cli/client_cmds.cc, cli/client_backfill.cc).
#pragma once

#include <cstdint>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/client.h"
#include "common/status.h"

namespace kiln::cli {

using nlohmann::json;

inline int Fail(const Status& s) {
  std::cerr << "kiln: " << s.message() << '\n';
  return 1;
}

inline std::unique_ptr<ApiClient> Connect(const ClientOptions& options, int* code) {
  auto client = ApiClient::Make(options);
  if (!client.ok()) {
    *code = Fail(client.status());
    return nullptr;
  }
  return std::move(client).value();
}

// The member `key` of `object`, or null (for answers of another shape than expected).
inline const json& At(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

inline int AsInt(const json& value) { return value.is_number_integer() ? value.get<int>() : 0; }

inline bool ValidRunId(const std::string& id) {
  return !id.empty() && id.size() <= 18 && id[0] != '0' &&
         id.find_first_not_of("0123456789") == std::string::npos;
}

inline std::string Text(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

// Metrics as `name=value  name=value`, a whole number without a decimal point whether it was
// written as 40 or 40.0 (a gate's report holds every metric as a double; `kiln models` and
// `kiln metrics` show the same number the same way).
inline std::string MetricsText(const json& metrics) {
  std::string out;
  for (const auto& [name, value] : metrics.items()) {
    out += (out.empty() ? "" : "  ") + name + "=";
    if (value.is_number_float()) {
      const double d = value.get<double>();
      if (d > -1e15 && d < 1e15 && d == static_cast<double>(static_cast<int64_t>(d))) {
        out += std::to_string(static_cast<int64_t>(d));
        continue;
      }
    }
    out += value.dump();
  }
  return out;
}

}  // namespace kiln::cli
