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

// Every byte covered by an occurrence of any value (occurrences may overlap or nest) is masked;
// each maximal covered run becomes one "***". With `hold`, the text is cut where what follows
// could still become (part of) an occurrence once more bytes come: at the earliest tail that a
// value starts with, moved back to the start of any occurrence that crosses the cut.
std::string SecretMasker::Mask(std::string_view text, bool hold, std::string& held,
                               bool* tail_masked) const {
  const size_t n = text.size();
  std::vector<bool> covered(n, false);
  std::vector<std::pair<size_t, size_t>> found;  // [start, end) of every occurrence
  for (const std::string& v : values_) {
    for (size_t at = text.find(v); at != std::string_view::npos; at = text.find(v, at + 1)) {
      found.emplace_back(at, at + v.size());
      std::fill(covered.begin() + static_cast<std::ptrdiff_t>(at),
                covered.begin() + static_cast<std::ptrdiff_t>(at + v.size()), true);
    }
  }
  size_t cut = n;
  if (hold) {
    const size_t longest = values_.front().size();
    for (size_t p = n > longest ? n - longest + 1 : 0; p < n && cut == n; ++p) {
      const std::string_view tail = text.substr(p);
      for (const std::string& v : values_) {
        if (v.size() > tail.size() && v.compare(0, tail.size(), tail) == 0) {
          cut = p;
          break;
        }
      }
    }
    for (bool moved = true; moved;) {
      moved = false;
      for (const auto& [start, end] : found) {
        if (start < cut && end > cut) {
          cut = start;
          moved = true;
        }
      }
    }
  }
  std::string out;
  out.reserve(cut);
  for (size_t i = 0; i < cut;) {
    if (!covered[i]) {
      size_t j = i;
      while (j < cut && !covered[j]) ++j;
      out.append(text.substr(i, j - i));
      i = j;
    } else {
      // A run that continues one written before (in an earlier chunk) is already marked.
      if (i > 0 || tail_masked == nullptr || !*tail_masked) out.append(kSecretMark);
      while (i < cut && covered[i]) ++i;
    }
  }
  if (tail_masked != nullptr && cut > 0) *tail_masked = covered[cut - 1];
  held.assign(text.substr(cut));
  return out;
}

std::string SecretMasker::Feed(std::string_view data) {
  if (values_.empty()) return std::string(data);
  std::string text = std::move(held_);
  text.append(data);
  return Mask(text, /*hold=*/true, held_, &tail_masked_);
}

std::string SecretMasker::Flush() {
  // What was held may still hold a shorter value (held as the start of a longer one).
  if (values_.empty()) return std::string();
  std::string unused;
  std::string rest = Mask(held_, /*hold=*/false, unused, &tail_masked_);
  held_.clear();
  return rest;
}

void SecretMasker::Drop() { held_.clear(); }

std::string SecretMasker::MaskAll(std::string_view text) const {
  if (values_.empty()) return std::string(text);
  std::string unused;
  return Mask(text, /*hold=*/false, unused, nullptr);
}

}  // namespace kiln
