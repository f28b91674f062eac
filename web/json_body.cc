#include "web/json_body.h"

#include <vector>

#include "web/input.h"

namespace kiln::web {

namespace {

// Builds the document from SAX events so that limits apply while reading (nothing deeper than
// the limit is ever built) and number texts are seen before they are converted.
class Builder : public nlohmann::json_sax<json> {
 public:
  explicit Builder(int max_depth) : max_depth_(max_depth) {}

  bool null() override { return Add(json(nullptr)); }
  bool boolean(bool value) override { return Add(json(value)); }
  bool number_integer(number_integer_t value) override { return Add(json(value)); }
  bool number_unsigned(number_unsigned_t value) override { return Add(json(value)); }
  bool number_float(number_float_t value, const string_t& text) override {
    body_.number_text[Pointer()] = text;
    return Add(json(value));
  }
  bool string(string_t& value) override {
    if (value.find('\0') != string_t::npos) return Fail("body has a string with a NUL character");
    return Add(json(std::move(value)));
  }
  bool binary(binary_t&) override { return Fail("body is not valid JSON"); }
  bool start_object(std::size_t) override { return Open(json::object()); }
  bool key(string_t& key) override {
    if (key.find('\0') != string_t::npos) return Fail("body has a key with a NUL character");
    if (stack_.back()->contains(key)) return Fail("body repeats the key " + Quoted(key));
    key_ = std::move(key);
    return true;
  }
  bool end_object() override { return Close(); }
  bool start_array(std::size_t) override { return Open(json::array()); }
  bool end_array() override { return Close(); }
  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception& error) override {
    // "[json.exception.parse_error.101] parse error at line 1, ..." -> "parse error at line 1, ..."
    std::string what = error.what();
    if (auto end = what.find("] "); what.starts_with("[json.exception.") && end != what.npos) {
      what = what.substr(end + 2);
    }
    // The last token read may be a whole (long) string of the body.
    constexpr size_t kMax = 200;
    if (what.size() > kMax) what = what.substr(0, kMax) + "...";
    return Fail("body is not valid JSON: " + what);
  }

  JsonBody& body() { return body_; }
  const std::string& error() const { return error_; }

 private:
  // The pointer of the value being added: the path of open containers plus its key or index.
  std::string Pointer() const {
    std::string out;
    for (size_t i = 0; i < stack_.size(); ++i) {
      const json& container = *stack_[i];
      out += '/';
      if (i + 1 < stack_.size()) {
        out += tokens_[i + 1];
      } else if (container.is_array()) {
        out += std::to_string(container.size());
      } else {
        out += PointerToken(key_);
      }
    }
    return out;
  }

  json* Insert(json value) {
    if (stack_.empty()) {
      body_.value = std::move(value);
      return &body_.value;
    }
    json& parent = *stack_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return &parent.back();
    }
    return &(parent[key_] = std::move(value));
  }
  bool Add(json value) {
    Insert(std::move(value));
    return true;
  }

  bool Open(json empty) {
    if (static_cast<int>(stack_.size()) >= max_depth_) {
      return Fail("body nests deeper than " + std::to_string(max_depth_) + " levels");
    }
    std::string token;
    if (!stack_.empty()) {
      token =
          stack_.back()->is_array() ? std::to_string(stack_.back()->size()) : PointerToken(key_);
    }
    json* added = Insert(std::move(empty));
    stack_.push_back(added);
    tokens_.push_back(std::move(token));
    return true;
  }

  bool Close() {
    stack_.pop_back();
    tokens_.pop_back();
    return true;
  }

  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }

  int max_depth_;
  JsonBody body_;
  std::vector<json*> stack_;         // open containers, outermost first
  std::vector<std::string> tokens_;  // pointer token of each open container in its parent
  std::string key_;                  // the key of the next value in the innermost object
  std::string error_;
};

}  // namespace

std::string JsonBody::NumberText(const std::string& pointer, const json& number) const {
  if (auto it = number_text.find(pointer); it != number_text.end()) return it->second;
  return number.dump();
}

Result<JsonBody> ParseJsonBody(std::string_view text, int max_depth) {
  Builder builder(max_depth);
  bool ok = json::sax_parse(text.begin(), text.end(), &builder);
  if (!ok) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         builder.error().empty() ? "body is not valid JSON" : builder.error());
  }
  return std::move(builder.body());
}

std::string PointerToken(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace kiln::web
