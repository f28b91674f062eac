#include "dag/template.h"

#include <deque>
#include <optional>
#include <utility>

namespace kiln::dag {

namespace {

constexpr std::string_view kBuiltinNames[] = {
    "run.id",
    "run.dir",
    "run.logical_date",
    "run.data_interval_start",
    "run.data_interval_end",
    "run.triggered_by",
    "pipeline.name",
    "task.id",
    "task.attempt",
};

// A template cut into literal text and {{ name }} references.
struct Token {
  bool is_name = false;
  std::string_view text;  // the literal text, or the name without the spaces around it
  size_t position = 0;    // 1-based position in the template of the text or of "{{"
};

struct Tokens {
  std::vector<Token> tokens;
  std::vector<std::string> errors;
};

std::string_view TrimBlanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Tokens Tokenize(std::string_view text) {
  Tokens out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find("{{", i);
    if (open == std::string_view::npos) break;
    if (open > i) out.tokens.push_back({false, text.substr(i, open - i), i + 1});
    size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      out.errors.push_back("'{{' at position " + std::to_string(open + 1) + " has no closing '}}'");
      i = open;
      break;
    }
    std::string_view name = TrimBlanks(text.substr(open + 2, close - open - 2));
    if (name.empty()) {
      out.errors.push_back("empty template name at position " + std::to_string(open + 1) +
                           "; expected e.g. {{ params.NAME }}");
    }
    out.tokens.push_back({true, name, open + 1});
    i = close + 2;
  }
  if (i < text.size()) out.tokens.push_back({false, text.substr(i), i + 1});
  return out;
}

std::string UnknownName(std::string_view name, const std::set<std::string>& known) {
  std::string list;
  for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
  return "unknown template name '" + std::string(name) + "' (known: " + list + ")";
}

// Follows the shell's quoting through the literal parts of a `command` so that each value can be
// quoted for the context it lands in: plain words, '...' and "..." at the top level. Everywhere
// else (inside $(...), `...`, ${...}, $((...)), comments, here-documents) a quoted value could
// still be re-read as syntax, so a reference there is refused rather than guessed at.
class ShellContext {
 public:
  enum class Kind {
    kTop,
    kSingle,
    kDouble,
    kAnsi,  // $'...': quoting in bash, "$" and a quoted string in dash
    kSubst,
    kBacktick,
    kBrace,
    kArith,
    kComment,
  };

  void Feed(std::string_view text) {
    for (size_t i = 0; i < text.size(); ++i) Step(text, i);
  }
  // Where a value placed now lands (kTop, kSingle or kDouble), or why it cannot be placed.
  Result<Kind> Where() const;
  void AfterValue() { prev_ = 'x'; }

 private:
  struct Frame {
    Kind kind;
    int depth = 0;  // open parentheses inside $(...) and $((...))
  };

  void Step(std::string_view text, size_t& i);
  void StepHeredocBody(char c);
  bool StepDelimiter(char c);
  void StepUnquoted(std::string_view text, size_t& i);
  bool StepExpansion(std::string_view text, size_t& i);
  void StepQuoted(std::string_view text, size_t& i);
  void StepNested(std::string_view text, size_t& i);
  bool InsideDouble() const;
  bool AtWordStart() const;

  std::vector<Frame> stack_{{Kind::kTop}};
  char prev_ = '\n';
  bool escaped_ = false;
  std::string lost_;  // set when the text is beyond what this scanner can follow
  // Here-documents: the delimiter being read, those waiting for the next line, the body.
  bool reading_delimiter_ = false;
  bool delimiter_started_ = false;
  bool delimiter_escaped_ = false;
  char delimiter_quote_ = 0;
  bool strip_tabs_ = false;
  std::string delimiter_;
  std::deque<std::pair<std::string, bool>> pending_;
  bool in_body_ = false;
  std::string body_line_;
};

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

bool IsOperator(char c) { return std::string_view(";&|()<>\n").find(c) != std::string_view::npos; }

bool ShellContext::AtWordStart() const { return IsBlank(prev_) || IsOperator(prev_); }

bool ShellContext::InsideDouble() const {
  for (const Frame& f : stack_) {
    if (f.kind == Kind::kDouble) return true;
  }
  return false;
}

void ShellContext::Step(std::string_view text, size_t& i) {
  const char c = text[i];
  if (in_body_) return StepHeredocBody(c);
  if (reading_delimiter_ && StepDelimiter(c)) return;
  if (escaped_) {
    escaped_ = false;
    prev_ = 'x';
    return;
  }
  const Kind top = stack_.back().kind;
  if (top == Kind::kTop || top == Kind::kSubst) {
    StepUnquoted(text, i);
  } else if (top == Kind::kSingle || top == Kind::kAnsi || top == Kind::kComment) {
    StepQuoted(text, i);
  } else {
    StepNested(text, i);
  }
}

void ShellContext::StepHeredocBody(char c) {
  if (c != '\n') {
    body_line_ += c;
    return;
  }
  std::string_view line = body_line_;
  if (pending_.front().second) {
    while (!line.empty() && line.front() == '\t') line.remove_prefix(1);
  }
  if (line == pending_.front().first) pending_.pop_front();
  in_body_ = !pending_.empty();
  body_line_.clear();
  prev_ = '\n';
}

// Returns true when `c` was consumed as part of the delimiter word.
bool ShellContext::StepDelimiter(char c) {
  if (delimiter_escaped_) {
    delimiter_ += c;
    delimiter_escaped_ = false;
    return true;
  }
  if (delimiter_quote_ != 0) {
    if (c == delimiter_quote_) {
      delimiter_quote_ = 0;
    } else {
      delimiter_ += c;
    }
    return true;
  }
  if (c == '\\' || c == '\'' || c == '"') {
    delimiter_escaped_ = c == '\\';
    delimiter_quote_ = c == '\\' ? 0 : c;
    delimiter_started_ = true;
    return true;
  }
  const bool ends = IsBlank(c) || IsOperator(c);
  if (!ends) {
    delimiter_ += c;
    delimiter_started_ = true;
    return true;
  }
  if (IsBlank(c) && !delimiter_started_) return true;
  pending_.emplace_back(std::move(delimiter_), strip_tabs_);
  delimiter_.clear();
  reading_delimiter_ = false;
  return false;
}

// $( $(( ${ and backquotes, which open a nested context wherever expansions happen.
bool ShellContext::StepExpansion(std::string_view text, size_t& i) {
  const char c = text[i];
  if (c == '`') {
    stack_.push_back({Kind::kBacktick});
  } else if (c == '$' && text.substr(i, 3) == "$((") {
    stack_.push_back({Kind::kArith});
    i += 2;
  } else if (c == '$' && text.substr(i, 2) == "$(") {
    stack_.push_back({Kind::kSubst});
    i += 1;
  } else if (c == '$' && text.substr(i, 2) == "${") {
    stack_.push_back({Kind::kBrace});
    i += 1;
  } else {
    return false;
  }
  prev_ = text[i];  // "(" after "$(": what follows starts a word
  return true;
}

void ShellContext::StepUnquoted(std::string_view text, size_t& i) {
  const char c = text[i];
  Frame& frame = stack_.back();
  if (StepExpansion(text, i)) return;
  if (c == '\\') {
    escaped_ = true;
  } else if (c == '$' && text.substr(i, 2) == "$'") {
    stack_.push_back({Kind::kAnsi});
    i += 1;
  } else if (c == '\'') {
    stack_.push_back({Kind::kSingle});
  } else if (c == '"') {
    stack_.push_back({Kind::kDouble});
  } else if (c == '#' && AtWordStart()) {
    stack_.push_back({Kind::kComment});
  } else if (text.substr(i, 3) == "<<<") {
    i += 2;  // a bash here-string: its word is an ordinary word
  } else if (text.substr(i, 2) == "<<") {
    reading_delimiter_ = true;
    delimiter_started_ = false;
    i += 1;
    strip_tabs_ = text.substr(i + 1, 1) == "-";
    if (strip_tabs_) i += 1;
  } else if (c == '\n' && !pending_.empty()) {
    in_body_ = true;
  } else if (frame.kind == Kind::kSubst && c == '(') {
    ++frame.depth;
  } else if (frame.kind == Kind::kSubst && c == ')') {
    if (frame.depth == 0) {
      stack_.pop_back();
    } else {
      --frame.depth;
    }
  } else if (frame.kind == Kind::kSubst && AtWordStart() && text.substr(i, 4) == "case" &&
             (i + 4 == text.size() || IsBlank(text[i + 4]) || text[i + 4] == '\n')) {
    // A case pattern's ')' closes nothing; past this point parentheses cannot be counted.
    lost_ = "after a 'case' inside $(...)";
  }
  prev_ = c;
}

// Inside '...', $'...' and comments, where nothing nests.
void ShellContext::StepQuoted(std::string_view text, size_t& i) {
  const char c = text[i];
  switch (stack_.back().kind) {
    case Kind::kAnsi:
      // bash reads \' as a quote inside the string, dash as the string's end: past it, the two
      // shells disagree on what is quoted.
      if (text.substr(i, 2) == "\\'") lost_ = "after \\' inside $'...'";
      if (text.substr(i, 2) == "\\\\") ++i;  // one escaped backslash in bash, two in dash
      if (c == '\'') stack_.pop_back();
      break;
    case Kind::kComment:
      if (c == '\n') {
        stack_.pop_back();
        prev_ = '\n';
        Step(text, i);
        return;
      }
      break;
    default:
      if (c == '\'') stack_.pop_back();
      break;
  }
  prev_ = c;
}

// Inside "...", `...`, ${...} and $((...)), where backslashes escape and expansions nest.
void ShellContext::StepNested(std::string_view text, size_t& i) {
  const char c = text[i];
  Frame& frame = stack_.back();
  const Kind kind = frame.kind;
  if (c == '\\') {
    escaped_ = true;
  } else if ((kind == Kind::kDouble && c == '"') || (kind == Kind::kBacktick && c == '`') ||
             (kind == Kind::kBrace && c == '}')) {
    stack_.pop_back();
  } else if (kind != Kind::kBacktick && StepExpansion(text, i)) {
    return;
  } else if ((kind == Kind::kBrace || kind == Kind::kArith) && c == '"') {
    stack_.push_back({Kind::kDouble});
  } else if ((kind == Kind::kBrace || kind == Kind::kArith) && c == '\'' && !InsideDouble()) {
    // Within "${x:-'a'}" single quotes are plain characters; unquoted, they quote.
    stack_.push_back({Kind::kSingle});
  } else if (kind == Kind::kArith && c == '(') {
    ++frame.depth;
  } else if (kind == Kind::kArith && c == ')') {
    if (frame.depth > 0) {
      --frame.depth;
    } else {
      stack_.pop_back();
      if (text.substr(i + 1, 1) == ")") ++i;
    }
  }
  prev_ = c;
}

Result<ShellContext::Kind> ShellContext::Where() const {
  if (in_body_) return Status::Error("inside a here-document");
  if (reading_delimiter_) return Status::Error("as a here-document delimiter");
  if (!lost_.empty()) return Status::Error(lost_ + ", where kiln cannot follow the quoting");
  for (auto it = stack_.rbegin(); it != stack_.rend(); ++it) {
    switch (it->kind) {
      case Kind::kSubst:
        return Status::Error("inside a command substitution $(...)");
      case Kind::kBacktick:
        return Status::Error("inside a command substitution `...`");
      case Kind::kBrace:
        return Status::Error("inside a parameter expansion ${...}");
      case Kind::kArith:
        return Status::Error("inside an arithmetic expansion $((...))");
      case Kind::kAnsi:
        return Status::Error("inside $'...'");
      case Kind::kComment:
        return Status::Error("inside a shell comment");
      case Kind::kTop:
      case Kind::kSingle:
      case Kind::kDouble:
        break;
    }
  }
  const Kind top = stack_.back().kind;
  if (escaped_) return Status::Error("right after a backslash");
  if (top != Kind::kSingle && prev_ == '$') return Status::Error("right after '$'");
  return top;
}

std::optional<std::string> Lookup(const TemplateValues& values, std::string_view name) {
  auto it = values.find(name);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

std::set<std::string> KnownNames(const TemplateValues& values) {
  std::set<std::string> known;
  for (const auto& [name, value] : values) known.insert(name);
  return known;
}

}  // namespace

std::set<std::string> TemplateNames(const PipelineSpec& spec) {
  std::set<std::string> names(std::begin(kBuiltinNames), std::end(kBuiltinNames));
  for (const Param& p : spec.params) names.insert("params." + p.name);
  return names;
}

std::vector<std::string_view> TemplateRefs(std::string_view text) {
  std::vector<std::string_view> refs;
  for (const Token& t : Tokenize(text).tokens) {
    if (t.is_name && !t.text.empty()) refs.push_back(t.text);
  }
  return refs;
}

std::vector<std::string_view> SecretNamesIn(std::string_view text) {
  std::vector<std::string_view> names;
  if (text.find("{{") == std::string_view::npos) return names;
  for (std::string_view ref : TemplateRefs(text)) {
    if (ref.starts_with(kSecretsPrefix)) names.push_back(ref.substr(kSecretsPrefix.size()));
  }
  return names;
}

std::string SecretRef(std::string_view name) {
  return std::string(kSecretsPrefix) + std::string(name);
}

std::vector<std::string> CheckTemplate(std::string_view text, const std::set<std::string>& known) {
  Tokens scan = Tokenize(text);
  for (const Token& t : scan.tokens) {
    if (t.is_name && !t.text.empty() && !known.contains(std::string(t.text))) {
      scan.errors.push_back(UnknownName(t.text, known));
    }
  }
  return scan.errors;
}

Result<std::string> Render(std::string_view text, const TemplateValues& values, Quoting quoting) {
  Tokens scan = Tokenize(text);
  if (!scan.errors.empty()) return Status::Error(scan.errors.front());
  std::string out;
  ShellContext shell;
  for (const Token& t : scan.tokens) {
    if (!t.is_name) {
      out += t.text;
      if (quoting == Quoting::kShell) shell.Feed(t.text);
      continue;
    }
    std::optional<std::string> value = Lookup(values, t.text);
    if (!value) return Status::Error(UnknownName(t.text, KnownNames(values)));
    if (quoting == Quoting::kNone) {
      out += *value;
      continue;
    }
    Result<ShellContext::Kind> where = shell.Where();
    if (!where.ok()) {
      const std::string ref = "{{ " + std::string(t.text) + " }}";
      return Status::Error("cannot quote " + ref + " at position " + std::to_string(t.position) +
                           " " + where.message() +
                           "; use it as a plain word, or in '...' or \"...\", e.g. assign "
                           "v=" +
                           ref + " first and use \"$v\" there");
    }
    const std::string quoted = ShellQuote(*value);
    switch (*where) {
      case ShellContext::Kind::kSingle:
        out += "'" + quoted + "'";  // close the author's quote, add the value, reopen it
        break;
      case ShellContext::Kind::kDouble:
        out += "\"" + quoted + "\"";
        break;
      default:
        out += quoted;
        break;
    }
    shell.AfterValue();
  }
  return out;
}

std::string ShellQuote(std::string_view value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += '\'';
  return out;
}

}  // namespace kiln::dag
