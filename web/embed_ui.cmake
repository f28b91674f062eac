# Writes OUT, a C++ file holding every file of DIR as bytes with its content type and ETag
# (web/assets.h). Run with cmake -DDIR=... -DOUT=... -P embed_ui.cmake; web/CMakeLists.txt runs
# it again whenever a file of DIR changes.
file(GLOB names RELATIVE ${DIR} ${DIR}/*)
list(SORT names)
set(arrays "")
set(table "")
set(i 0)
foreach(name IN LISTS names)
  if(IS_DIRECTORY ${DIR}/${name})
    message(FATAL_ERROR "${DIR}/${name}: web/ui/ holds files only")
  endif()
  file(READ ${DIR}/${name} hex HEX)
  file(SHA256 ${DIR}/${name} sha)
  string(LENGTH "${hex}" digits)
  math(EXPR size "${digits} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  # A trailing 0 keeps an empty file's array valid.
  string(APPEND arrays "constexpr unsigned char kFile${i}[] = {${bytes}0};\n")
  string(SUBSTRING ${sha} 0 32 tag)
  string(APPEND table "    {\"${name}\", ContentTypeFor(\"${name}\"), "
         "{reinterpret_cast<const char*>(kFile${i}), ${size}}, \"\\\"${tag}\\\"\"},\n")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE ${OUT}.tmp "// Generated from web/ui/ by web/embed_ui.cmake: do not edit.
#include <array>

#include \"web/assets.h\"

namespace kiln::web {
namespace {
${arrays}}  // namespace

std::span<const Asset> EmbeddedAssets() {
  static const std::array<Asset, ${i}> kAssets = {{
${table}  }};
  return kAssets;
}

}  // namespace kiln::web
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUT}.tmp)
