// Process-wide logging setup (spdlog). Components log with spdlog::info(...) etc.
#pragma once

#include <string>

namespace freeagent {

// Sets the default logger: stderr, "[time] [level] [name] message", level from `level`
// ("trace".."off") or FREEAGENT_LOG_LEVEL when empty.
void InitLogging(const std::string& name, const std::string& level = "");

}  // namespace freeagent
