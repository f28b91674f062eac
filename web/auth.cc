#include "web/auth.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "common/random.h"
#include "common/sha256.h"
#include "web/http.h"

namespace kiln::web {

namespace {

bool IsHex(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

// Equal-length strings compared without an early exit.
bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

std::optional<Role> ParseRole(std::string_view text) {
  if (text == "viewer") return Role::kViewer;
  if (text == "operator") return Role::kOperator;
  if (text == "admin") return Role::kAdmin;
  return std::nullopt;
}

std::string_view Name(Role role) {
  switch (role) {
    case Role::kViewer:
      return "viewer";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "viewer";
}

Status CheckTokens(const std::vector<Token>& tokens) {
  std::set<std::string> names;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const Token& t = tokens[i];
    std::string subject =
        t.name.empty() ? "token #" + std::to_string(i + 1) : "token '" + t.name + "'";
    bool printable =
        std::all_of(t.name.begin(), t.name.end(), [](char c) { return c > ' ' && c < 127; });
    if (t.name.empty() || t.name.size() > 64 || !printable) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           subject + ": name must be 1-64 printable characters without spaces");
    }
    if (!names.insert(t.name).second) {
      return Status::Error(ErrorCode::kInvalidArgument, subject + ": name is used twice");
    }
    if (t.sha256_hex.size() != 64 || !IsHex(t.sha256_hex)) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           subject + ": sha256 must be 64 hex digits (the SHA-256 of the token)");
    }
  }
  return Status::Ok();
}

TokenTable::TokenTable(std::vector<Token> tokens) : tokens_(std::move(tokens)) {
  for (Token& t : tokens_) t.sha256_hex = AsciiLower(t.sha256_hex);
}

std::optional<std::string> SessionTable::Open(const Token& token, const Tokens* current) {
  std::string value = RandomHex(32);
  std::string hash = Sha256Hex(value);
  std::lock_guard lock(mu_);
  // Under the lock that CloseUnless takes after a reload replaced the tokens: a token found in
  // the table before opens no session once it is gone.
  if (current && !current->ByHash(token.sha256_hex)) return std::nullopt;
  // Erasing a token's last session drops its list: looked up again each time.
  for (auto mine = by_token_.find(token.sha256_hex);
       mine != by_token_.end() && !mine->second.empty() && mine->second.size() >= per_token_;
       mine = by_token_.find(token.sha256_hex)) {
    EraseLocked(std::string(mine->second.front()));
  }
  while (by_hash_.size() >= max_ && !oldest_first_.empty()) {
    EraseLocked(std::string(oldest_first_.front()));
  }
  std::list<std::string>& mine = by_token_[token.sha256_hex];
  oldest_first_.push_back(hash);
  mine.push_back(hash);
  by_hash_[hash] = Entry{token.sha256_hex, std::prev(oldest_first_.end()), std::prev(mine.end())};
  return value;
}

void SessionTable::EraseLocked(const std::string& hash) {
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return;
  oldest_first_.erase(it->second.age);
  auto mine = by_token_.find(it->second.token);
  mine->second.erase(it->second.among);
  if (mine->second.empty()) by_token_.erase(mine);
  by_hash_.erase(it);
}

// Looked up by the value's hash, so how long a lookup takes says nothing about open values.
std::optional<std::string> SessionTable::Find(std::string_view value) const {
  std::string hash = Sha256Hex(value);
  std::lock_guard lock(mu_);
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  return it->second.token;
}

void SessionTable::CloseUnless(const Tokens& keep) {
  std::lock_guard lock(mu_);
  std::vector<std::string> gone;
  for (const auto& [token, sessions] : by_token_) {
    if (!keep.ByHash(token)) gone.insert(gone.end(), sessions.begin(), sessions.end());
  }
  for (const std::string& hash : gone) EraseLocked(hash);
}

void SessionTable::Close(std::string_view value) {
  std::string hash = Sha256Hex(value);
  std::lock_guard lock(mu_);
  EraseLocked(hash);
}

size_t SessionTable::size() const {
  std::lock_guard lock(mu_);
  return by_hash_.size();
}

const Token* TokenTable::ByHash(std::string_view sha256_hex) const {
  const Token* found = nullptr;
  for (const Token& t : tokens_) {
    if (ConstantTimeEqual(sha256_hex, t.sha256_hex) && found == nullptr) found = &t;
  }
  return found;
}

Status Tokens::Set(std::vector<Token> tokens) {
  if (Status checked = CheckTokens(tokens); !checked.ok()) return checked;
  auto table = std::make_shared<const TokenTable>(std::move(tokens));
  std::lock_guard lock(mu_);
  table_ = std::move(table);
  return Status::Ok();
}

std::shared_ptr<const TokenTable> Tokens::Table() const {
  std::lock_guard lock(mu_);
  return table_;
}

std::shared_ptr<const Token> Tokens::Find(std::string_view secret) const {
  auto table = Table();
  const Token* token = table->Find(secret);
  // Shares the table's life: the token stays valid while the request holds it.
  return token ? std::shared_ptr<const Token>(table, token) : nullptr;
}

std::shared_ptr<const Token> Tokens::ByHash(std::string_view sha256_hex) const {
  auto table = Table();
  const Token* token = table->ByHash(sha256_hex);
  return token ? std::shared_ptr<const Token>(table, token) : nullptr;
}

const Token* TokenTable::Find(std::string_view secret) const {
  std::string hash = Sha256Hex(secret);
  const Token* found = nullptr;
  // Every hash is compared, so the time taken does not depend on where a match is.
  for (const Token& t : tokens_) {
    if (ConstantTimeEqual(hash, t.sha256_hex) && found == nullptr) found = &t;
  }
  return found;
}

std::optional<std::string_view> BearerSecret(std::string_view authorization) {
  authorization = Trim(authorization);
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      AsciiLower(authorization.substr(0, kScheme.size())) != kScheme) {
    return std::nullopt;
  }
  std::string_view secret = Trim(authorization.substr(kScheme.size()));
  bool clean = std::all_of(secret.begin(), secret.end(),
                           [](char c) { return static_cast<unsigned char>(c) > ' ' && c != 127; });
  if (secret.empty() || !clean) return std::nullopt;
  return secret;
}

std::optional<std::string_view> CookieValue(std::string_view cookie_header, std::string_view name) {
  while (!cookie_header.empty()) {
    size_t end = cookie_header.find(';');
    std::string_view pair = Trim(cookie_header.substr(0, end));
    cookie_header = end == std::string_view::npos ? "" : cookie_header.substr(end + 1);
    size_t eq = pair.find('=');
    if (eq == std::string_view::npos || Trim(pair.substr(0, eq)) != name) continue;
    std::string_view value = Trim(pair.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    return value;
  }
  return std::nullopt;
}

bool IsCookieSafe(std::string_view value) {
  if (value.empty() || value.size() > 4096) return false;
  return std::all_of(value.begin(), value.end(), [](char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c > 0x20 && c < 0x7f && c != '"' && c != ',' && c != ';' && c != '\\';
  });
}

}  // namespace kiln::web
