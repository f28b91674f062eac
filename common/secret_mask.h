// Replaces every occurrence of secret values in a stream of bytes by "***", also when an
// occurrence is split across two writes (a task's output arrives in chunks of any size).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln {

inline constexpr std::string_view kSecretMark = "***";

class SecretMasker {
 public:
  SecretMasker() = default;
  // Empty values are ignored. At the same position the longest value wins.
  explicit SecretMasker(std::vector<std::string> values);

  bool empty() const { return values_.empty(); }
  // Masks `data` as the continuation of everything fed before and returns what can be written
  // now. Up to (longest value - 1) bytes that could begin a secret are held back until the next
  // Feed or Flush decides them.
  std::string Feed(std::string_view data);
  // What is still held back, masked (the stream ended).
  std::string Flush();
  // Masks one whole text (no state kept).
  std::string MaskAll(std::string_view text) const;

 private:
  // Masks `text`; with `hold`, keeps back its longest tail that is a proper prefix of a value.
  std::string Mask(std::string_view text, bool hold, std::string& held) const;

  std::vector<std::string> values_;  // non-empty, longest first
  std::string held_;
};

}  // namespace kiln
