#include "config/items.h"

#include <nlohmann/json.hpp>

#include "config/toml_reader.h"

namespace kiln::config {

namespace {

using json = nlohmann::json;

constexpr size_t kMaxItemsFile = size_t{64} << 20;

std::optional<dag::Value> Scalar(const json& j) {
  dag::Value v;
  if (j.is_string()) {
    v.type = dag::Value::Type::kString;
    v.string = j.get<std::string>();
  } else if (j.is_boolean()) {
    v.type = dag::Value::Type::kBool;
    v.boolean = j.get<bool>();
  } else if (j.is_number_integer()) {
    v.type = dag::Value::Type::kInteger;
    v.integer = j.get<int64_t>();
  } else if (j.is_number()) {
    v.type = dag::Value::Type::kFloat;
    v.number = j.get<double>();
  } else {
    return std::nullopt;
  }
  return v;
}

std::string Kind(const json& j) {
  if (j.is_array()) return "an array";
  if (j.is_object()) return "an object";
  if (j.is_null()) return "null";
  return "a value";
}

}  // namespace

Result<std::vector<dag::Value>> ParseItems(std::string_view text) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::out_of_range&) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "holds a number too large for a double; expected a JSON array");
  } catch (const json::exception&) {
    return Status::Error(ErrorCode::kInvalidArgument, "not valid JSON; expected a JSON array");
  }
  if (!doc.is_array()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "expected a JSON array of items, got " + Kind(doc));
  }
  if (doc.size() > dag::kMaxItems) {
    return Status::Error(
        ErrorCode::kInvalidArgument,
        std::to_string(doc.size()) + " items; at most " + std::to_string(dag::kMaxItems));
  }
  const std::string accepted = "; an item is a string, number, boolean or an object of those";
  std::vector<dag::Value> items;
  items.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); ++i) {
    const json& j = doc[i];
    if (auto v = Scalar(j)) {
      items.push_back(std::move(*v));
      continue;
    }
    if (!j.is_object()) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "item " + std::to_string(i) + " is " + Kind(j) + accepted);
    }
    dag::Value table;
    table.type = dag::Value::Type::kTable;
    for (const auto& [key, member] : j.items()) {
      auto v = Scalar(member);
      if (!v) {
        return Status::Error(ErrorCode::kInvalidArgument, "item " + std::to_string(i) + "." + key +
                                                              " is " + Kind(member) + accepted);
      }
      v->key = key;
      table.items.push_back(std::move(*v));
    }
    items.push_back(std::move(table));
  }
  return items;
}

Result<std::vector<dag::Value>> ReadItems(const std::filesystem::path& file) {
  auto text = internal::ReadFileText(file, kMaxItemsFile);
  if (!text.ok()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "for_each file '" + file.string() + "': " + text.message());
  }
  auto items = ParseItems(*text);
  if (!items.ok()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         "for_each file '" + file.string() + "': " + items.message());
  }
  return items;
}

}  // namespace kiln::config
