#include "common/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace kiln::log {

namespace {

spdlog::logger& Logger() {
  // stderr, so that command output on stdout stays machine-readable.
  static auto logger = [] {
    auto l = spdlog::stderr_logger_mt("kiln");
    l->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
    return l;
  }();
  return *logger;
}

}  // namespace

void SetLevel(Level level) {
  switch (level) {
    case Level::kDebug:
      Logger().set_level(spdlog::level::debug);
      break;
    case Level::kInfo:
      Logger().set_level(spdlog::level::info);
      break;
    case Level::kWarn:
      Logger().set_level(spdlog::level::warn);
      break;
    case Level::kError:
      Logger().set_level(spdlog::level::err);
      break;
  }
}
void Debug(std::string_view message) { Logger().debug("{}", message); }
void Info(std::string_view message) { Logger().info("{}", message); }
void Warn(std::string_view message) { Logger().warn("{}", message); }
void Error(std::string_view message) { Logger().error("{}", message); }

}  // namespace kiln::log
