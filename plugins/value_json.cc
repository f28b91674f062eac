// A kind's keys as JSON, for `kiln task <kind> --options JSON`.
#include <nlohmann/json.hpp>

#include "plugins/api.h"

namespace kiln::plugins {

namespace {

nlohmann::json Encode(const dag::Value& v) {
  using Type = dag::Value::Type;
  switch (v.type) {
    case Type::kBool:
      return v.boolean;
    case Type::kInteger:
      return v.integer;
    case Type::kFloat:
      return v.number;
    case Type::kString:
      return v.string;
    case Type::kArray: {
      nlohmann::json a = nlohmann::json::array();
      for (const dag::Value& item : v.items) a.push_back(Encode(item));
      return a;
    }
    case Type::kTable:
      break;
  }
  // Members in file order: an array of [key, value] pairs keeps it.
  nlohmann::json t = nlohmann::json::array();
  for (const dag::Value& member : v.items) t.push_back({member.key, Encode(member)});
  return nlohmann::json{{"table", std::move(t)}};
}

Result<dag::Value> Decode(const nlohmann::json& j, int depth) {
  using Type = dag::Value::Type;
  if (depth > 64) return Status::Error(ErrorCode::kInvalidArgument, "options nested too deep");
  dag::Value v;
  if (j.is_boolean()) {
    v.type = Type::kBool;
    v.boolean = j.get<bool>();
  } else if (j.is_number_integer()) {
    v.type = Type::kInteger;
    v.integer = j.get<int64_t>();
  } else if (j.is_number()) {
    v.type = Type::kFloat;
    v.number = j.get<double>();
  } else if (j.is_string()) {
    v.type = Type::kString;
    v.string = j.get<std::string>();
  } else if (j.is_array()) {
    v.type = Type::kArray;
    for (const auto& item : j) {
      auto d = Decode(item, depth + 1);
      if (!d.ok()) return d;
      v.items.push_back(std::move(d).value());
    }
  } else if (j.is_object() && j.size() == 1 && j.contains("table") && j["table"].is_array()) {
    v.type = Type::kTable;
    for (const auto& pair : j["table"]) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string()) {
        return Status::Error(ErrorCode::kInvalidArgument,
                             "options: a table member is not [key, value]");
      }
      auto d = Decode(pair[1], depth + 1);
      if (!d.ok()) return d;
      d->key = pair[0].get<std::string>();
      v.items.push_back(std::move(d).value());
    }
  } else {
    return Status::Error(ErrorCode::kInvalidArgument, "options: unexpected JSON value");
  }
  return v;
}

}  // namespace

Result<std::string> ToJson(const dag::Value& value) {
  try {
    return Encode(value).dump();
  } catch (const nlohmann::json::exception&) {
    return Status::Error(ErrorCode::kInvalidArgument, "a value is not valid UTF-8 text");
  }
}

Result<dag::Value> FromJson(std::string_view json) {
  nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Error(ErrorCode::kInvalidArgument, "options: not JSON");
  return Decode(j, 0);
}

}  // namespace kiln::plugins
