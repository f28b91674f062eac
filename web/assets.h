// The web page's files (web/ui/), built into the binary by web/embed_ui.cmake: nothing is read
// from disk or fetched from elsewhere at run time.
#pragma once

#include <span>
#include <string_view>

namespace kiln::web {

struct Asset {
  std::string_view name;  // file name in web/ui/, e.g. "app.js"
  std::string_view type;  // Content-Type
  std::string_view body;
  std::string_view etag;  // a strong ETag from the file's SHA-256, quoted
};

// Every embedded file, by name.
std::span<const Asset> Assets();
// The file called `name`, or null (names are plain file names: no '/').
const Asset* FindAsset(std::string_view name);
// The Content-Type for a file name by its extension; "application/octet-stream" when unknown.
std::string_view ContentTypeFor(std::string_view name);

}  // namespace kiln::web
