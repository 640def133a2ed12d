#include "common/config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"

namespace freeagent {
namespace {

std::string TypeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

}  // namespace

absl::StatusOr<toml::table> ParseToml(const std::string& text, const std::string& source_name) {
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return absl::InvalidArgumentError(absl::StrCat(source_name, ":", where.line, ":", where.column, ": ",
                                                   std::string(e.description())));
  }
}

absl::StatusOr<toml::table> LoadToml(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseToml(*text, path);
}

absl::Status ConfigReader::Error(const std::string& key, const std::string& reason) const {
  return absl::InvalidArgumentError(absl::StrCat(source_, ": key ", key, ": ", reason));
}

namespace {

template <typename T>
absl::Status TypeError(const ConfigReader& r, const std::string& key, const toml::node& n, const char* want) {
  (void)sizeof(T);
  std::string where;
  if (n.source().begin.line > 0) where = absl::StrCat(" (line ", n.source().begin.line, ")");
  return r.Error(key, absl::StrCat("expected ", want, ", got ", TypeName(n.type()), where));
}

}  // namespace

absl::Status ConfigReader::Get(const std::string& key, std::string* out) const {
  const toml::node* n = table_.at_path(key).node();
  if (n == nullptr) return absl::OkStatus();
  if (!n->is_string()) return TypeError<std::string>(*this, key, *n, "string");
  *out = n->as_string()->get();
  return absl::OkStatus();
}

absl::Status ConfigReader::Get(const std::string& key, int64_t* out) const {
  const toml::node* n = table_.at_path(key).node();
  if (n == nullptr) return absl::OkStatus();
  if (!n->is_integer()) return TypeError<int64_t>(*this, key, *n, "integer");
  *out = n->as_integer()->get();
  return absl::OkStatus();
}

absl::Status ConfigReader::Get(const std::string& key, uint32_t* out) const {
  int64_t v = *out;
  const toml::node* n = table_.at_path(key).node();
  if (n == nullptr) return absl::OkStatus();
  absl::Status s = Get(key, &v);
  if (!s.ok()) return s;
  if (v < 0 || v > static_cast<int64_t>(UINT32_MAX)) {
    return Error(key, absl::StrCat("must be between 0 and ", UINT32_MAX, ", got ", v));
  }
  *out = static_cast<uint32_t>(v);
  return absl::OkStatus();
}

absl::Status ConfigReader::Get(const std::string& key, bool* out) const {
  const toml::node* n = table_.at_path(key).node();
  if (n == nullptr) return absl::OkStatus();
  if (!n->is_boolean()) return TypeError<bool>(*this, key, *n, "boolean");
  *out = n->as_boolean()->get();
  return absl::OkStatus();
}

absl::Status ConfigReader::Get(const std::string& key, std::vector<std::string>* out) const {
  const toml::node* n = table_.at_path(key).node();
  if (n == nullptr) return absl::OkStatus();
  if (!n->is_array()) return TypeError<int>(*this, key, *n, "array of strings");
  std::vector<std::string> values;
  size_t i = 0;
  for (const toml::node& e : *n->as_array()) {
    if (!e.is_string()) return TypeError<int>(*this, absl::StrCat(key, "[", i, "]"), e, "string");
    values.push_back(e.as_string()->get());
    ++i;
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::Status ConfigReader::Get(const std::string& key, std::map<std::string, std::string>* out) const {
  const toml::node* n = table_.at_path(key).node();
  if (n == nullptr) return absl::OkStatus();
  if (!n->is_table()) return TypeError<int>(*this, key, *n, "table of strings");
  std::map<std::string, std::string> values;
  for (const auto& [k, v] : *n->as_table()) {
    std::string full = absl::StrCat(key, ".", std::string(k.str()));
    if (!v.is_string()) return TypeError<int>(*this, full, v, "string");
    values[std::string(k.str())] = v.as_string()->get();
  }
  *out = std::move(values);
  return absl::OkStatus();
}

absl::Status ConfigReader::RejectUnknown(const std::string& section, const std::vector<std::string>& known) const {
  const toml::table* t = &table_;
  if (!section.empty()) {
    const toml::node* n = table_.at_path(section).node();
    if (n == nullptr) return absl::OkStatus();
    if (!n->is_table()) return TypeError<int>(*this, section, *n, "table");
    t = n->as_table();
  }
  for (const auto& [k, v] : *t) {
    if (std::find(known.begin(), known.end(), k.str()) != known.end()) continue;
    std::string full = section.empty() ? std::string(k.str()) : absl::StrCat(section, ".", std::string(k.str()));
    std::string where;
    if (v.source().begin.line > 0) where = absl::StrCat(" (line ", v.source().begin.line, ")");
    return Error(full, absl::StrCat("unknown key", where));
  }
  return absl::OkStatus();
}

}  // namespace freeagent
