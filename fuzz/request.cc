// What an HTTP request brings: JSON bodies (with depth and number limits) and the values of
// paths and query strings.
#include <string>

#include "fuzz/check.h"
#include "web/input.h"
#include "web/json_body.h"

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

  if (auto n = kiln::web::ParseDecimal(text, 0)) {
    Check(std::to_string(*n) == text, "a decimal is its canonical text");
  }
  if (auto n = kiln::web::ParseCount(text)) Check(*n >= 0, "a count is not negative");
  if (kiln::web::CheckPipelineName(text).ok()) Check(text.size() <= 64, "names are short");
  if (kiln::web::CheckTaskId(text).ok()) Check(text.size() <= 64, "ids are short");
  Check(kiln::web::Quoted(text).size() <= 64 + 5, "a quoted value is cut");
  return 0;
}
