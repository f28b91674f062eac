// Secrets: declared in kiln.toml ([secrets]), referred to by pipelines as {{ secrets.NAME }} in
// env values, argv and notify webhooks. Their values are read when used (a rotated file is seen
// by the next task) and never written anywhere by kiln: not in the database, an event, the API,
// the run folder or a log (task logs show "***" instead, see common/secret_mask.h).
//
//   [secrets]
//   db_password = { file = "/etc/kiln/secrets/db_password" }
//   api_key = { env = "KILN_SECRET_API_KEY" }      # from the daemon's environment
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln::config {

struct SecretRef {
  enum class From { kFile, kEnv };
  From from = From::kFile;
  std::string where;  // an absolute file path, or an environment variable's name
};

using SecretRefs = std::map<std::string, SecretRef, std::less<>>;

// ^[A-Za-z_][A-Za-z0-9_]{0,63}$
bool IsSecretName(std::string_view name);

// A secret's value: the file's bytes (at most 64 KiB) without one trailing "\n" or "\r\n", or the
// variable's value. Empty is an error (an empty secret could not be masked). The error names the
// secret and its source, never a value.
Result<std::string> ReadSecret(std::string_view name, const SecretRef& ref);

// Reads secrets by name from `refs`; unknown names are an error.
class SecretReader {
 public:
  explicit SecretReader(SecretRefs refs) : refs_(std::move(refs)) {}
  Result<std::string> operator()(std::string_view name) const;
  const SecretRefs& refs() const { return refs_; }

 private:
  SecretRefs refs_;
};

}  // namespace kiln::config
