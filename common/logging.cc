#include "common/logging.h"

#include <cstdlib>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace freeagent {

void InitLogging(const std::string& name, const std::string& level) {
  // Called again once a config file has named the level: the logger is reused, not registered twice.
  std::shared_ptr<spdlog::logger> logger = spdlog::get(name);
  if (!logger) logger = spdlog::stderr_logger_mt(name);
  logger->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] [%n] %v");
  std::string lvl = level;
  if (lvl.empty()) {
    const char* env = std::getenv("FREEAGENT_LOG_LEVEL");
    lvl = env != nullptr ? env : "info";
  }
  logger->set_level(spdlog::level::from_str(lvl));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

}  // namespace freeagent
