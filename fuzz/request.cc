// What an HTTP request brings: JSON bodies (with depth and number limits), request targets
// (path and query string) and their values, and Range headers.
#include <string>

#include "common/text.h"
#include "fuzz/check.h"
#include "web/http.h"
#include "web/input.h"
#include "web/json_body.h"
#include "web/range.h"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  using kiln::fuzz::Check;
  const std::string_view text = kiln::fuzz::Text(data, size);

  auto body = kiln::web::ParseJsonBody(text, 16);
  if (body.ok()) {
    auto again = kiln::web::ParseJsonBody(body->value.dump(), 16);
    Check(again.ok() && again->value == body->value, "a body reads back from its dump");
  } else {
    Check(body.message().starts_with("body "), "a refused body says so");
  }

  if (auto n = kiln::ParseDecimal(text, 0)) {
    Check(std::to_string(*n) == text, "a decimal is its canonical text");
  }
  if (auto n = kiln::web::ParseCount(text)) Check(*n >= 0, "a count is not negative");
  if (kiln::web::CheckPipelineName(text).ok()) Check(text.size() <= 64, "names are short");
  // A task id has at most 64 characters, an instance's index at most 4 digits in brackets.
  if (kiln::web::CheckTaskId(text).ok()) Check(text.size() <= 70, "ids are short");
  Check(kiln::web::Quoted(text).size() <= 64 + 5, "a quoted value is cut");

  std::string path;
  kiln::web::Params params;
  if (kiln::web::ParseTarget(text, path, params)) {
    Check(text.starts_with("/") && path.size() <= text.size(), "a target decodes to no more");
    for (const auto& [name, value] : params) {
      Check(name.size() + value.size() < text.size(), "a parameter is part of the query");
    }
  }

  // A size from the first bytes, the header from the rest.
  uint64_t bytes = 0;
  for (size_t i = 0; i < std::min<size_t>(text.size(), 3); ++i) {
    bytes = bytes * 256 + static_cast<unsigned char>(text[i]);
  }
  auto range = kiln::web::ParseRange(text.substr(std::min<size_t>(text.size(), 3)), bytes);
  if (range.kind == kiln::web::RangeRequest::kOne) {
    Check(range.first <= range.last && range.last < bytes, "a range lies within the bytes");
  } else if (range.kind == kiln::web::RangeRequest::kRefused) {
    Check(!range.why.empty(), "a refused range says why");
  }
  return 0;
}
