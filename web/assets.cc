#include "web/assets.h"

#include <array>
#include <utility>

namespace kiln::web {

// Defined in the generated ui_assets.cc.
std::span<const Asset> EmbeddedAssets();

std::span<const Asset> Assets() { return EmbeddedAssets(); }

const Asset* FindAsset(std::string_view name) {
  for (const Asset& a : EmbeddedAssets()) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

std::string_view ContentTypeFor(std::string_view name) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kTypes = {{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".json", "application/json"},
  }};
  for (auto [ext, type] : kTypes) {
    if (name.ends_with(ext)) return type;
  }
  return "application/octet-stream";
}

}  // namespace kiln::web
