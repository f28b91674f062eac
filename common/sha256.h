#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace kiln {

// Lower-case hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);
// `bytes` as lowercase hex, two digits per byte.
std::string LowerHex(std::string_view bytes);

// SHA-256 over data given in pieces (a file read in blocks).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  // Lower-case hex of everything given; call once.
  std::string Hex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln
