// Templates and shell quoting. Input: the template, then a NUL and the value of params.a.
#include "dag/template.h"

#include <string>

#include "fuzz/check.h"

namespace {

// Reads back one word of POSIX sh made only of '...' runs and \' escapes.
std::string Unquote(std::string_view quoted) {
  std::string out;
  size_t i = 0;
  while (i < quoted.size()) {
    if (quoted[i] == '\'') {
      const size_t end = quoted.find('\'', i + 1);
      kiln::fuzz::Check(end != std::string_view::npos, "every quote is closed");
      out.append(quoted.substr(i + 1, end - i - 1));
      i = end + 1;
    } else {
      kiln::fuzz::Check(quoted.substr(i, 2) == "\\'", "only \\' between quoted runs");
      out += '\'';
      i += 2;
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  using kiln::fuzz::Check;
  const std::string_view input = kiln::fuzz::Text(data, size);
  const size_t split = input.find('\0');
  const std::string_view text = input.substr(0, split);
  const std::string_view value =
      split == std::string_view::npos ? std::string_view() : input.substr(split + 1);

  Check(Unquote(kiln::dag::ShellQuote(value)) == value, "shell quoting reads back");
  Check(Unquote(kiln::dag::ShellQuote(text)) == text, "shell quoting reads back");

  const std::set<std::string> known = {"params.a", "run.id", "task.id"};
  const kiln::dag::TemplateValues values = {
      {"params.a", std::string(value)}, {"run.id", "42"}, {"task.id", "t"}};
  const bool valid = kiln::dag::CheckTemplate(text, known).empty();
  auto shell = kiln::dag::Render(text, values, kiln::dag::Quoting::kShell);
  auto plain = kiln::dag::Render(text, values, kiln::dag::Quoting::kNone);
  // (A shell-quoted rendering may still refuse a reference where it cannot be quoted, inside
  // `...` for instance: validation reports that for `command`.)
  if (valid) Check(plain.ok(), "a template that checks renders");
  if (text == "{{ params.a }}") {
    Check(*shell == kiln::dag::ShellQuote(value) && *plain == value, "values are substituted");
  }
  return 0;
}
