#include "common/secret_mask.h"

#include <algorithm>

namespace kiln {

SecretMasker::SecretMasker(std::vector<std::string> values) {
  for (std::string& v : values) {
    if (!v.empty()) values_.push_back(std::move(v));
  }
  std::sort(values_.begin(), values_.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  values_.erase(std::unique(values_.begin(), values_.end()), values_.end());
}

std::string SecretMasker::Mask(std::string_view text, bool hold, std::string& held) const {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    // The earliest occurrence of any value; at the same position the longest (sorted first).
    size_t best = std::string_view::npos;
    size_t best_len = 0;
    for (const std::string& v : values_) {
      const size_t at = text.find(v, pos);
      if (at < best) {
        best = at;
        best_len = v.size();
      }
    }
    if (best == std::string_view::npos) break;
    if (hold) {
      // A longer value may start here and complete in the next chunk: decide then.
      const std::string_view tail = text.substr(best);
      const bool longer = std::any_of(values_.begin(), values_.end(), [&](const std::string& v) {
        return v.size() > tail.size() && v.compare(0, tail.size(), tail) == 0;
      });
      if (longer) {
        out.append(text.substr(pos, best - pos));
        held.assign(tail);
        return out;
      }
    }
    out.append(text.substr(pos, best - pos));
    out.append(kSecretMark);
    pos = best + best_len;
  }
  std::string_view rest = text.substr(pos);
  size_t keep = 0;
  if (hold) {
    // The longest tail of `rest` that a value starts with: it may complete in the next chunk.
    for (const std::string& v : values_) {
      const size_t most = std::min(v.size() - 1, rest.size());
      for (size_t n = most; n > keep; --n) {
        if (rest.substr(rest.size() - n) == std::string_view(v).substr(0, n)) {
          keep = n;
          break;
        }
      }
    }
  }
  out.append(rest.substr(0, rest.size() - keep));
  held.assign(rest.substr(rest.size() - keep));
  return out;
}

std::string SecretMasker::Feed(std::string_view data) {
  if (values_.empty()) return std::string(data);
  std::string text = std::move(held_);
  text.append(data);
  return Mask(text, /*hold=*/true, held_);
}

std::string SecretMasker::Flush() {
  // What was held may still hold a shorter value (held as the start of a longer one).
  std::string rest = MaskAll(held_);
  held_.clear();
  return rest;
}

std::string SecretMasker::MaskAll(std::string_view text) const {
  if (values_.empty()) return std::string(text);
  std::string unused;
  return Mask(text, /*hold=*/false, unused);
}

}  // namespace kiln
