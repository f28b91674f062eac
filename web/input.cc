#include "web/input.h"

#include <limits>

#include "dag/items.h"

namespace kiln::web {

namespace {

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// ^[a-z0-9][a-z0-9<extra>]{0,63}$
bool MatchesId(std::string_view text, std::string_view extra) {
  if (text.empty() || text.size() > 64 || !IsLowerAlnum(text[0])) return false;
  for (char c : text) {
    if (!IsLowerAlnum(c) && extra.find(c) == std::string_view::npos) return false;
  }
  return true;
}

}  // namespace

Status CheckPipelineName(std::string_view name) {
  if (MatchesId(name, "_.-")) return Status::Ok();
  return Status::Error(ErrorCode::kInvalidArgument,
                       "pipeline name " + Quoted(name) + " must match ^[a-z0-9][a-z0-9_.-]{0,63}$");
}

Status CheckTaskId(std::string_view id) {
  // An instance of a mapped task: "train[3]".
  const auto instance = dag::ParseInstanceName(id);
  if (MatchesId(instance ? instance->task : id, "_-")) return Status::Ok();
  return Status::Error(ErrorCode::kInvalidArgument,
                       "task id " + Quoted(id) +
                           " must match ^[a-z0-9][a-z0-9_-]{0,63}$, or name an instance: "
                           "train[3]");
}

std::optional<int64_t> ParseCount(std::string_view text) {
  if (text.empty() || text.size() > 1000) return std::nullopt;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    if (value > (std::numeric_limits<int64_t>::max() - (c - '0')) / 10) {
      value = std::numeric_limits<int64_t>::max();
    } else {
      value = value * 10 + (c - '0');
    }
  }
  return value;
}

std::string Quoted(std::string_view value) {
  constexpr size_t kMax = 64;
  std::string out = "'";
  for (size_t i = 0; i < value.size() && i < kMax; ++i) {
    auto c = static_cast<unsigned char>(value[i]);
    out += c < 0x20 || c == 0x7f ? '?' : value[i];
  }
  if (value.size() > kMax) out += "...";
  out += "'";
  return out;
}

}  // namespace kiln::web
