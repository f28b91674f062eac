// Who may call the HTTP API: tokens, kept as the SHA-256 of their secret, each with a role
// (docs/api.md, "Signing in"). Pure: no HTTP library types here, so it is tested directly.
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace kiln::web {

// A role may do everything the roles before it may.
enum class Role { kViewer, kOperator, kAdmin };

// "viewer" | "operator" | "admin"; nullopt for anything else (case matters).
std::optional<Role> ParseRole(std::string_view text);
std::string_view Name(Role role);

// One configured API token. The secret itself is never kept, only its hash.
struct Token {
  std::string name;  // recorded as the actor of every change the token makes
  Role role = Role::kViewer;
  std::string sha256_hex;  // hex SHA-256 of the secret: 64 digits, either case
};

// Ok when every token has a name of 1-64 printable ASCII characters (no spaces), the names are
// unique and every hash is 64 hex digits. kInvalidArgument naming the first bad token.
Status CheckTokens(const std::vector<Token>& tokens);

// The configured tokens, looked up by presented secret. Immutable: safe to share between threads.
class TokenTable {
 public:
  explicit TokenTable(std::vector<Token> tokens);
  // The token whose hash is SHA-256(`secret`), or null. The hash is compared against every
  // configured hash, each comparison in constant time. Secrets are never logged or kept.
  const Token* Find(std::string_view secret) const;
  // The token whose hash is `sha256_hex` (lower case), or null.
  const Token* ByHash(std::string_view sha256_hex) const;

 private:
  std::vector<Token> tokens_;  // hashes in lower case
};

// The tokens in effect, which a reload of kiln.toml replaces (Set). A token found is kept alive
// by the request that holds it, whatever happens to the table meanwhile. Thread-safe.
class Tokens {
 public:
  explicit Tokens(std::vector<Token> tokens)
      : table_(std::make_shared<const TokenTable>(std::move(tokens))) {}
  // Replaces every token (CheckTokens first: on error nothing changes).
  Status Set(std::vector<Token> tokens);
  // The token whose secret this is, or null.
  std::shared_ptr<const Token> Find(std::string_view secret) const;
  // The token in effect whose hash is `sha256_hex` (lower case), or null: a session's token, or
  // a stream's, after a reload.
  std::shared_ptr<const Token> ByHash(std::string_view sha256_hex) const;

 private:
  std::shared_ptr<const TokenTable> Table() const;
  mutable std::mutex mu_;
  std::shared_ptr<const TokenTable> table_;
};

// Browsers that signed in (the kiln_session cookie). Each sign-in opens a session whose value is
// random, never derived from the token; only its SHA-256 is kept, in memory, with the token it
// stands for. A session ends at sign-out, when the daemon restarts, when more than `max` are open
// (the oldest goes first), or when its token has more than `per_token` (that token's oldest goes
// first: one token signing in again and again ends its own sessions, not everyone's), or when
// its token is removed from kiln.toml (the session names its token by hash: a token whose role
// changes keeps its sessions, with the new role). Thread-safe.
class SessionTable {
 public:
  explicit SessionTable(size_t max = 10000, size_t per_token = 100)
      : max_(max), per_token_(per_token) {}
  // A new session for `token`: the cookie's value, 64 hex digits; nullopt when `current` (the
  // tokens in effect, if given) no longer has the token.
  std::optional<std::string> Open(const Token& token, const Tokens* current = nullptr);
  // The hash of the token of the open session `value` (Tokens::ByHash finds it), or nullopt.
  std::optional<std::string> Find(std::string_view value) const;
  // Ends the session `value`, if open.
  void Close(std::string_view value);
  // Ends every session whose token `keep` does not find (tokens removed by a reload).
  void CloseUnless(const Tokens& keep);
  size_t size() const;

 private:
  struct Entry {
    std::string token;                       // its token's SHA-256, lower case
    std::list<std::string>::iterator age;    // in oldest_first_
    std::list<std::string>::iterator among;  // in its token's list
  };
  void EraseLocked(const std::string& hash);
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> by_hash_;  // SHA-256 of the value -> session
  std::list<std::string> oldest_first_;             // the same hashes
  std::unordered_map<std::string, std::list<std::string>> by_token_;  // each token's, oldest first
  size_t max_;
  size_t per_token_;
};

// The secret of an `Authorization: Bearer <secret>` header value (scheme in any case); nullopt for
// another scheme, a missing or empty secret, or a secret with spaces or control characters.
std::optional<std::string_view> BearerSecret(std::string_view authorization);
// The value of cookie `name` in a Cookie header value ("a=1; kiln_token=..."); nullopt if absent.
std::optional<std::string_view> CookieValue(std::string_view cookie_header, std::string_view name);
// Whether `value` may be sent as a cookie value unquoted: 1-4096 RFC 6265 cookie-octets (no
// control characters, spaces, quotes, commas, semicolons or backslashes).
bool IsCookieSafe(std::string_view value);

}  // namespace kiln::web
