#include "signing/keychain_installer.h"

#include <openssl/rand.h>

#include <chrono>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace freeagent::signing {
namespace {

using vm::ShellQuote;

constexpr auto kCommandTimeout = std::chrono::minutes(2);
constexpr auto kCleanupTimeout = std::chrono::minutes(2);
constexpr char kLockTimeoutSeconds[] = "21600";
constexpr char kClassicProfiles[] = "Library/MobileDevice/Provisioning Profiles";
constexpr char kXcode16Profiles[] = "Library/Developer/Xcode/UserData/Provisioning Profiles";

absl::StatusOr<std::string> RandomPassword() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return absl::InternalError("keychain password: RAND_bytes failed");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(c);
        }
    }
  }
  return out + "\"";
}

std::string Trim(std::string_view s) {
  absl::string_view v = absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size()));
  return std::string(v);
}

}  // namespace

std::vector<FoundIdentity> ParseFindIdentityOutput(std::string_view output) {
  std::vector<FoundIdentity> found;
  for (absl::string_view raw : absl::StrSplit(absl::string_view(output.data(), output.size()), '\n')) {
    std::string line = Trim(std::string_view(raw.data(), raw.size()));
    // `1) 3F2A...(40 hex) "Name" [(PROBLEM)]`
    size_t paren = line.find(") ");
    if (paren == std::string::npos || paren == 0) continue;
    bool numbered = true;
    for (size_t i = 0; i < paren; ++i) numbered = numbered && absl::ascii_isdigit(line[i]);
    if (!numbered) continue;
    std::string rest = line.substr(paren + 2);
    if (rest.size() < 43 || rest[40] != ' ' || rest[41] != '"') continue;
    FoundIdentity id;
    id.sha1 = absl::AsciiStrToUpper(rest.substr(0, 40));
    size_t close = rest.rfind('"');
    if (close <= 41) continue;
    id.name = rest.substr(42, close - 42);
    std::string tail = Trim(std::string_view(rest).substr(close + 1));
    if (tail.size() >= 2 && tail.front() == '(' && tail.back() == ')') id.problem = tail.substr(1, tail.size() - 2);
    found.push_back(std::move(id));
  }
  return found;
}

std::vector<std::string> ParseKeychainList(std::string_view output) {
  std::vector<std::string> paths;
  for (absl::string_view raw : absl::StrSplit(absl::string_view(output.data(), output.size()), '\n')) {
    std::string line = Trim(std::string_view(raw.data(), raw.size()));
    if (line.size() >= 2 && line.front() == '"' && line.back() == '"') paths.push_back(line.substr(1, line.size() - 2));
  }
  return paths;
}

std::string SecurityQuote(std::string_view arg) {
  std::string out = "\"";
  for (char c : arg) {
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

KeychainInstaller::KeychainInstaller(vm::Guest* guest, std::string security)
    : guest_(guest), security_(std::move(security)) {}

KeychainInstaller::~KeychainInstaller() { (void)Cleanup(); }

absl::StatusOr<KeychainInstaller::Output> KeychainInstaller::Run(const std::string& what, const std::string& command,
                                                                 const std::optional<std::string>& stdin_data,
                                                                 const Deadline& deadline,
                                                                 const CancellationToken& cancel) {
  Output output;
  vm::ExecRequest req;
  req.command = command;
  req.stdin_data = stdin_data;
  req.on_stdout = [&output](std::string_view b) { output.out.append(b.data(), b.size()); };
  req.on_stderr = [&output](std::string_view b) { output.err.append(b.data(), b.size()); };
  req.deadline = deadline.Min(Deadline::After(kCommandTimeout));
  req.cancel = cancel;
  req.kill_grace = std::chrono::seconds(2);
  ASSIGN_OR_RETURN(vm::ExecResult result, guest_->Exec(req));
  if (result.cancelled) return absl::CancelledError(absl::StrCat("signing: ", what, ": cancelled"));
  if (result.timed_out) return absl::DeadlineExceededError(absl::StrCat("signing: ", what, ": timed out"));
  if (!result.Succeeded()) {
    std::string detail = Trim(output.err.empty() ? output.out : output.err);
    return absl::FailedPreconditionError(absl::StrCat(
        "signing: ", what, " failed (", result.signal ? absl::StrCat("signal ", result.signal)
                                                      : absl::StrCat("exit ", result.exit_code),
        ")", detail.empty() ? "" : ": ", detail));
  }
  return output;
}

absl::Status KeychainInstaller::SecurityInteractive(const std::string& what, const std::string& line,
                                                    const Deadline& deadline, const CancellationToken& cancel) {
  // One command per session: `security -i` exits with the status of the last command it ran.
  return Run(what, absl::StrCat(ShellQuote(security_), " -i"), line + "\n", deadline, cancel).status();
}

absl::StatusOr<std::map<std::string, std::string>> KeychainInstaller::Install(const KeychainInstallRequest& r) {
  const Deadline& dl = r.deadline;
  const CancellationToken& cancel = r.cancel;
  ASSIGN_OR_RETURN(Output setup, Run("creating the signing temp dir",
                                     "umask 077 && d=$(mktemp -d \"${TMPDIR:-/tmp}/freeagent-signing.XXXXXX\") && "
                                     "chmod 700 \"$d\" && printf '%s\\n%s\\n' \"$d\" \"$HOME\"",
                                     std::nullopt, dl, cancel));
  std::vector<std::string> lines = absl::StrSplit(setup.out, '\n', absl::SkipEmpty());
  if (lines.size() != 2 || lines[0].empty() || lines[0][0] != '/' || lines[1].empty()) {
    return absl::InternalError(absl::StrCat("signing: unexpected temp dir/HOME output: ", setup.out));
  }
  temp_dir_ = lines[0];
  const std::string home = lines[1];

  const std::string p12_guest = temp_dir_ + "/identity.p12";
  RETURN_IF_ERROR(guest_->Upload(r.p12_host_path, p12_guest, 0600, cancel).status());
  for (const auto& file : r.profiles) {
    const std::string remote = absl::StrCat(temp_dir_, "/", file.profile.uuid, ".mobileprovision");
    RETURN_IF_ERROR(guest_->Upload(file.host_path, remote, 0600, cancel).status());
  }

  ASSIGN_OR_RETURN(Output list, Run("reading the keychain search list",
                                    absl::StrCat(ShellQuote(security_), " list-keychains -d user"), std::nullopt, dl,
                                    cancel));
  saved_search_list_ = ParseKeychainList(list.out);
  search_list_saved_ = true;

  ASSIGN_OR_RETURN(std::string kc_password, RandomPassword());
  keychain_ = temp_dir_ + "/freeagent.keychain-db";
  const std::string kc = SecurityQuote(keychain_);
  // create-keychain may add the keychain to the search list by itself, and a half-failed creation can
  // leave a file: from here on cleanup restores the saved list and deletes the keychain if it exists.
  keychain_created_ = true;
  search_list_changed_ = true;
  RETURN_IF_ERROR(SecurityInteractive("creating the keychain",
                                      absl::StrCat("create-keychain -p ", SecurityQuote(kc_password), " ", kc), dl,
                                      cancel));
  RETURN_IF_ERROR(SecurityInteractive("unlocking the keychain",
                                      absl::StrCat("unlock-keychain -p ", SecurityQuote(kc_password), " ", kc), dl,
                                      cancel));
  RETURN_IF_ERROR(SecurityInteractive("setting the keychain lock timeout",
                                      absl::StrCat("set-keychain-settings -lut ", kLockTimeoutSeconds, " ", kc), dl,
                                      cancel));
  RETURN_IF_ERROR(SecurityInteractive(
      absl::StrCat("importing the P12 ", r.identity.source),
      absl::StrCat("import ", SecurityQuote(p12_guest), " -k ", kc, " -f pkcs12 -P ", SecurityQuote(r.p12_password),
                   " -T /usr/bin/codesign -T /usr/bin/security"),
      dl, cancel));
  RETURN_IF_ERROR(SecurityInteractive(
      "allowing codesign to use the key (set-key-partition-list)",
      absl::StrCat("set-key-partition-list -S apple-tool:,apple:,codesign: -s -k ", SecurityQuote(kc_password), " ", kc),
      dl, cancel));

  std::string search = absl::StrCat(ShellQuote(security_), " list-keychains -d user -s ", ShellQuote(keychain_));
  for (const auto& path : saved_search_list_) absl::StrAppend(&search, " ", ShellQuote(path));
  RETURN_IF_ERROR(Run("adding the keychain to the search list", search, std::nullopt, dl, cancel).status());

  std::vector<std::string> uuids, paths;
  for (const auto& file : r.profiles) {
    const std::string name = file.profile.uuid + ".mobileprovision";
    std::string script = "set -e";
    for (const char* folder : {kClassicProfiles, kXcode16Profiles}) {
      const std::string dir = absl::StrCat(home, "/", folder);
      const std::string target = absl::StrCat(dir, "/", name);
      // Only files this job creates are removed at cleanup; an existing one is the same UUID, left alone.
      absl::StrAppend(&script, "; mkdir -p ", ShellQuote(dir), "; if [ ! -e ", ShellQuote(target), " ]; then cp ",
                      ShellQuote(temp_dir_ + "/" + name), " ", ShellQuote(target), "; echo ", ShellQuote(target),
                      "; fi");
    }
    ASSIGN_OR_RETURN(Output created, Run(absl::StrCat("installing profile ", file.profile.source), script, std::nullopt,
                                         dl, cancel));
    for (absl::string_view p : absl::StrSplit(created.out, '\n', absl::SkipEmpty())) installed_profiles_.emplace_back(p);
    uuids.push_back(file.profile.uuid);
    paths.push_back(absl::StrCat(home, "/", kClassicProfiles, "/", name));
  }

  ASSIGN_OR_RETURN(Output identities,
                   Run("listing code-signing identities",
                       absl::StrCat(ShellQuote(security_), " find-identity -v -p codesigning ", ShellQuote(keychain_)),
                       std::nullopt, dl, cancel));
  const CertificateInfo& cert = r.identity.certificate;
  std::vector<std::string> seen;
  bool listed = false;
  for (const FoundIdentity& id : ParseFindIdentityOutput(identities.out)) {
    listed = listed || (id.sha1 == cert.sha1 && id.problem.empty());
    seen.push_back(absl::StrCat(id.sha1, " \"", id.name, "\"", id.problem.empty() ? "" : " (" + id.problem + ")"));
  }
  if (!listed) {
    return absl::FailedPreconditionError(absl::StrCat(
        "signing: the keychain does not list \"", cert.common_name, "\" (SHA-1 ", cert.sha1,
        ") as a valid code-signing identity after import; found: ", seen.empty() ? "none" : absl::StrJoin(seen, "; ")));
  }

  if (!r.eas_credentials_dir.empty() && !r.profiles.empty()) {
    credentials_path_ = r.eas_credentials_dir + "/credentials.json";
    std::string json = absl::StrCat(
        "{\n  \"ios\": {\n    \"provisioningProfilePath\": ",
        JsonString(absl::StrCat(temp_dir_, "/", r.profiles[0].profile.uuid, ".mobileprovision")),
        ",\n    \"distributionCertificate\": {\n      \"path\": ", JsonString(p12_guest),
        ",\n      \"password\": ", JsonString(r.p12_password), "\n    }\n  }\n}\n");
    RETURN_IF_ERROR(Run("writing credentials.json",
                        absl::StrCat("umask 077 && cat > ", ShellQuote(credentials_path_), " && chmod 600 ",
                                     ShellQuote(credentials_path_)),
                        json, dl, cancel)
                        .status());
  }

  std::map<std::string, std::string> env;
  env[kEnvKeychain] = keychain_;
  env[kEnvSigningIdentity] = cert.common_name;
  env[kEnvSigningIdentitySha1] = cert.sha1;
  env[kEnvTeamId] = cert.team_id;
  env[kEnvProfileUuids] = absl::StrJoin(uuids, ",");
  env[kEnvProfilePaths] = absl::StrJoin(paths, ":");
  return env;
}

absl::Status KeychainInstaller::Cleanup() {
  absl::Status first;
  auto keep = [&first](const absl::Status& s) {
    if (first.ok() && !s.ok()) first = s;
  };
  const Deadline dl = Deadline::After(kCleanupTimeout);
  const CancellationToken none = CancellationToken::None();
  if (search_list_changed_ && search_list_saved_) {
    std::string restore = absl::StrCat(ShellQuote(security_), " list-keychains -d user -s");
    for (const auto& path : saved_search_list_) absl::StrAppend(&restore, " ", ShellQuote(path));
    keep(Run("restoring the keychain search list", restore, std::nullopt, dl, none).status());
    search_list_changed_ = false;
  }
  if (keychain_created_) {
    keep(Run("deleting the keychain",
             absl::StrCat("test ! -e ", ShellQuote(keychain_), " || ", ShellQuote(security_), " delete-keychain ",
                          ShellQuote(keychain_)),
             std::nullopt, dl, none)
             .status());
    keychain_created_ = false;
  }
  std::vector<std::string> files = installed_profiles_;
  if (!credentials_path_.empty()) files.push_back(credentials_path_);
  if (!files.empty()) {
    std::string rm = "rm -f --";
    for (const auto& f : files) absl::StrAppend(&rm, " ", ShellQuote(f));
    keep(Run("removing installed profiles", rm, std::nullopt, dl, none).status());
    installed_profiles_.clear();
    credentials_path_.clear();
  }
  if (!temp_dir_.empty()) {
    keep(Run("removing the signing temp dir", absl::StrCat("rm -rf -- ", ShellQuote(temp_dir_)), std::nullopt, dl,
             none)
             .status());
    temp_dir_.clear();
  }
  return first;
}

}  // namespace freeagent::signing
