// TOML configuration helpers: every error names the file, the key and the reason (and the line for
// syntax errors).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <toml++/toml.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace freeagent {

// Parses a TOML file. INVALID_ARGUMENT "<file>:<line>:<col>: <reason>" on a syntax error,
// NOT_FOUND if missing.
absl::StatusOr<toml::table> LoadToml(const std::string& path);
absl::StatusOr<toml::table> ParseToml(const std::string& text, const std::string& source_name);

// Typed reads of dotted keys ("worker.slots"). Absent keys leave `out` untouched and return OK;
// a value of the wrong type is INVALID_ARGUMENT "<source>: key <key>: expected <type>, got <type>".
class ConfigReader {
 public:
  ConfigReader(const toml::table& table, std::string source) : table_(table), source_(std::move(source)) {}

  absl::Status Get(const std::string& key, std::string* out) const;
  absl::Status Get(const std::string& key, int64_t* out) const;
  absl::Status Get(const std::string& key, uint32_t* out) const;
  absl::Status Get(const std::string& key, bool* out) const;
  absl::Status Get(const std::string& key, std::vector<std::string>* out) const;
  absl::Status Get(const std::string& key, std::map<std::string, std::string>* out) const;

  // Errors for keys under `section` (or the top level if empty) not in `known`: catches typos.
  absl::Status RejectUnknown(const std::string& section, const std::vector<std::string>& known) const;

  absl::Status Error(const std::string& key, const std::string& reason) const;
  const std::string& source() const { return source_; }
  const toml::table& table() const { return table_; }

 private:
  const toml::table& table_;
  std::string source_;
};

}  // namespace freeagent
