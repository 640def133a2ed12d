// The controller's configuration: the keys of its TOML file (flags of the same name win) and the
// checks done before anything starts, so a bad config fails at start-up naming the key.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <toml++/toml.h>

#include "absl/status/status.h"
#include "controller/auth.h"

namespace freeagent::controller {

struct ControllerConfig {
  std::string listen = "127.0.0.1:7070";
  std::string data_dir = "./.freeagent";
  int64_t heartbeat_interval_ms = 5000;
  int64_t liveness_timeout_ms = 30000;
  int64_t max_attempts = 2;
  int64_t artifact_retention_days = 30;
  int64_t artifact_max_total_gib = 0;
  int64_t partial_upload_max_age_hours = 24;
  int64_t input_retention_days = 7;
  std::string log_level;
  SecurityOptions security;
};

// Applies the TOML `table` (named `source` in errors) to `config`. A key for which `given_as_flag`
// returns true keeps its value (the command line wins); token lists are read from the file only.
// Unknown keys and wrong types are INVALID_ARGUMENT naming the source and key.
absl::Status ApplyControllerToml(const toml::table& table, const std::string& source,
                                 const std::function<bool(const std::string& key)>& given_as_flag,
                                 ControllerConfig* config);

// Ranges of the numbers, and the security rules of Authorizer::Create: TLS unless insecure, tokens
// unless insecure, well-formed token hashes.
absl::Status ValidateControllerConfig(const ControllerConfig& config);

}  // namespace freeagent::controller
