#include "config/secrets.h"

#include <cstdlib>

#include "common/text.h"
#include "config/toml_reader.h"

namespace kiln::config {

namespace {
constexpr size_t kMaxSecretBytes = 64 << 10;
}

bool IsSecretName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  auto word = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
  };
  for (size_t i = 0; i < name.size(); ++i) {
    if (!word(name[i], i == 0)) return false;
  }
  return true;
}

Result<std::string> ReadSecret(std::string_view name, const SecretRef& ref) {
  const std::string subject = "secret '" + std::string(name) + "'";
  std::string value;
  if (ref.from == SecretRef::From::kEnv) {
    const char* v = std::getenv(ref.where.c_str());
    if (v == nullptr) {
      return Status::Error(ErrorCode::kNotFound, subject + ": the daemon's environment has no " +
                                                     ref.where + "; set it before starting kiln");
    }
    value = v;
  } else {
    auto text = internal::ReadFileText(ref.where, kMaxSecretBytes);
    if (!text.ok()) {
      return Status::Error(ErrorCode::kNotFound,
                           subject + ": file '" + ref.where + "': " + text.message());
    }
    value = std::move(text).value();
    if (value.ends_with('\n')) value.pop_back();
    if (value.ends_with('\r')) value.pop_back();
  }
  if (value.empty()) {
    return Status::Error(ErrorCode::kInvalidArgument,
                         subject + " is empty (" +
                             (ref.from == SecretRef::From::kEnv ? "variable " : "file '") +
                             ref.where + (ref.from == SecretRef::From::kEnv ? "" : "'") + ")");
  }
  return value;
}

Result<std::string> SecretReader::operator()(std::string_view name) const {
  auto it = refs_.find(name);
  if (it == refs_.end()) {
    return Status::Error(ErrorCode::kNotFound, "unknown secret '" + std::string(name) +
                                                   "'; declare it in kiln.toml [secrets]");
  }
  return ReadSecret(name, it->second);
}

}  // namespace kiln::config
