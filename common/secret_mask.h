// Replaces every occurrence of secret values in a stream of bytes by "***", also when an
// occurrence is split across two writes (a task's output arrives in chunks of any size), and
// when occurrences overlap or one value contains another: every byte of any occurrence is
// masked, each run of masked bytes written as one "***". Cost: O(bytes x values) per chunk.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln {

inline constexpr std::string_view kSecretMark = "***";

class SecretMasker {
 public:
  SecretMasker() = default;
  // Empty values are ignored.
  explicit SecretMasker(std::vector<std::string> values);

  bool empty() const { return values_.empty(); }
  // Masks `data` as the continuation of everything fed before and returns what can be written
  // now. Bytes that could begin a secret (at most about twice the longest value) are held back
  // until the next Feed or Flush decides them.
  std::string Feed(std::string_view data);
  // What is still held back, masked (the stream ended).
  std::string Flush();
  // Forgets what is held back (the stream is cut there: it may be the start of a secret).
  void Drop();
  // Masks one whole text (no state kept).
  std::string MaskAll(std::string_view text) const;

 private:
  // Masks `text`; with `hold`, keeps back the tail that may still become part of an occurrence.
  // `tail_masked`: whether what was written last ended in a mask (a run continuing it is not
  // marked again, so that the output does not depend on how the stream was cut); updated.
  std::string Mask(std::string_view text, bool hold, std::string& held, bool* tail_masked) const;

  std::vector<std::string> values_;  // non-empty, unique, longest first
  std::string held_;
  bool tail_masked_ = false;
};

}  // namespace kiln
