// Logging facade (spdlog inside). Messages must never contain secrets.
#pragma once

#include <string_view>

namespace kiln::log {

enum class Level { kDebug, kInfo, kWarn, kError };
void SetLevel(Level level);
void Debug(std::string_view message);
void Info(std::string_view message);
void Warn(std::string_view message);
void Error(std::string_view message);

}  // namespace kiln::log
