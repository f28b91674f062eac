// What the fuzz targets share: a check that stops the fuzzer with a message when a property of a
// result does not hold.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace kiln::fuzz {

inline void Check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "property broken: %s\n", what);
  std::abort();
}

inline std::string_view Text(const unsigned char* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace kiln::fuzz
