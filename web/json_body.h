// Request bodies: JSON read with limits, keeping the text of numbers as sent. Pure (no HTTP).
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln::web {

using json = nlohmann::ordered_json;

struct JsonBody {
  json value;
  // The text as sent of every number that is not an exact 64-bit integer (fractions, exponents,
  // integers too large for 64 bits), by JSON pointer: "/params/epochs" -> "1e3".
  std::map<std::string, std::string> number_text;

  // The text of `number` (found at `pointer`) as sent: its original text when recorded, else its
  // exact decimal form.
  std::string NumberText(const std::string& pointer, const json& number) const;
};

// Parses one JSON value. kInvalidArgument, message starting "body ", when the text is not JSON,
// nests arrays and objects deeper than `max_depth` levels, repeats a key within an object, holds
// a number beyond the range of a double, or has a string with a NUL character.
Result<JsonBody> ParseJsonBody(std::string_view text, int max_depth);

// `key` escaped as one JSON pointer token ("~" -> "~0", "/" -> "~1").
std::string PointerToken(std::string_view key);

}  // namespace kiln::web
