// For the tests of the built-in kinds that read data files: a folder of files made for one test
// and removed after it.
#pragma once

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

namespace kiln::plugins::testing {

class DataFiles {
 public:
  DataFiles() {
    static int counter = 0;
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = std::filesystem::temp_directory_path() /
            ("kiln_data_files_" + std::to_string(::getpid()) + "_" + std::to_string(now) + "_" +
             std::to_string(++counter));
    std::filesystem::create_directories(path_);
  }
  ~DataFiles() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  DataFiles(const DataFiles&) = delete;
  DataFiles& operator=(const DataFiles&) = delete;
  // Writes `bytes` to the file `name` of the folder; returns its path.
  std::string Write(const std::string& name, const std::string& bytes) const {
    const std::filesystem::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << bytes;
    return file.string();
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace kiln::plugins::testing
