#include "dag/items.h"

#include <cstdio>

namespace kiln::dag {

namespace {

std::string Number(double d) {
  return ToText(ParamValue(d));  // the same shortest round-trip text as params
}

void AppendJsonString(std::string& out, std::string_view s) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void AppendJson(std::string& out, const Value& v) {
  switch (v.type) {
    case Value::Type::kString:
      AppendJsonString(out, v.string);
      break;
    case Value::Type::kInteger:
      out += std::to_string(v.integer);
      break;
    case Value::Type::kFloat:
      out += Number(v.number);
      break;
    case Value::Type::kBool:
      out += v.boolean ? "true" : "false";
      break;
    case Value::Type::kArray:
      out += '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i > 0) out += ',';
        AppendJson(out, v.items[i]);
      }
      out += ']';
      break;
    case Value::Type::kTable:
      out += '{';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i > 0) out += ',';
        AppendJsonString(out, v.items[i].key);
        out += ':';
        AppendJson(out, v.items[i]);
      }
      out += '}';
      break;
  }
}

}  // namespace

std::string ItemText(const Value& item) {
  switch (item.type) {
    case Value::Type::kString:
      return item.string;
    case Value::Type::kInteger:
      return std::to_string(item.integer);
    case Value::Type::kFloat:
      return Number(item.number);
    case Value::Type::kBool:
      return item.boolean ? "true" : "false";
    default:
      return "";
  }
}

std::string ItemJson(const Value& item) {
  std::string out;
  AppendJson(out, item);
  return out;
}

TemplateValues ItemValues(const Value& item, size_t index) {
  TemplateValues values;
  values["item.index"] = std::to_string(index);
  if (item.type == Value::Type::kTable) {
    // {{ item.index }} is the instance's index whatever the item holds: a member named
    // "index" is read through KILN_ITEM.
    for (const Value& member : item.items) {
      if (member.key != "index") values["item." + member.key] = ItemText(member);
    }
  } else {
    values["item"] = ItemText(item);
  }
  return values;
}

std::optional<InstanceRef> ParseInstanceName(std::string_view name) {
  const size_t open = name.rfind('[');
  if (open == std::string_view::npos || !name.ends_with(']')) return std::nullopt;
  const std::string_view digits = name.substr(open + 1, name.size() - open - 2);
  if (digits.empty() || digits.size() > 4 || (digits.size() > 1 && digits[0] == '0') ||
      digits.find_first_not_of("0123456789") != std::string_view::npos) {
    return std::nullopt;
  }
  size_t index = 0;
  for (char c : digits) index = index * 10 + static_cast<size_t>(c - '0');
  if (index >= kMaxItems) return std::nullopt;
  return InstanceRef{name.substr(0, open), index};
}

std::string InstanceName(std::string_view task, size_t index) {
  return std::string(task) + "[" + std::to_string(index) + "]";
}

}  // namespace kiln::dag
