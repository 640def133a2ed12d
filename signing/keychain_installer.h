// Installs a validated signing identity and its provisioning profiles in a macOS guest, the way careful
// CI tools do, and removes every trace afterwards. All of it goes through vm::Guest: files by upload
// into a 0700 temp dir, commands by Exec. Passwords (the P12's and the random keychain password) are
// only ever written to `security -i` on stdin, never into any command line.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/cancellation.h"
#include "common/deadline.h"
#include "signing/p12.h"
#include "signing/profile.h"
#include "vm/guest.h"

namespace freeagent::signing {

// One identity listed by `security find-identity [-v] -p codesigning`.
struct FoundIdentity {
  std::string sha1;     // uppercase hex
  std::string name;     // "Apple Development: Jane Doe (TEAMID1234)"
  std::string problem;  // e.g. "CSSMERR_TP_CERT_REVOKED"; empty when valid
};

// Parses `security find-identity` output (both the plain and the -v form).
std::vector<FoundIdentity> ParseFindIdentityOutput(std::string_view output);

// Parses `security list-keychains` output: one quoted path per line.
std::vector<std::string> ParseKeychainList(std::string_view output);

// Quotes `arg` for one `security -i` command line: double quotes, with `\` and `"` escaped (the
// security tool's own line splitter undoes exactly this).
std::string SecurityQuote(std::string_view arg);

struct KeychainInstallRequest {
  std::string p12_host_path;  // host file, already validated
  std::string p12_password;
  P12Identity identity;
  struct ProfileFile {
    Profile profile;
    std::string host_path;
  };
  std::vector<ProfileFile> profiles;
  // Guest directory to write `credentials.json` into (for `eas build --local`); empty = none.
  std::string eas_credentials_dir;
  Deadline deadline = Deadline::Infinite();
  CancellationToken cancel;
};

// Environment for build steps, set by a successful Install.
inline constexpr char kEnvKeychain[] = "FREEAGENT_KEYCHAIN";
inline constexpr char kEnvSigningIdentity[] = "FREEAGENT_SIGNING_IDENTITY";
inline constexpr char kEnvSigningIdentitySha1[] = "FREEAGENT_SIGNING_IDENTITY_SHA1";
inline constexpr char kEnvTeamId[] = "FREEAGENT_TEAM_ID";
inline constexpr char kEnvProfileUuids[] = "FREEAGENT_PROFILE_UUIDS";  // comma-separated
inline constexpr char kEnvProfilePaths[] = "FREEAGENT_PROFILE_PATHS";  // colon-separated

class KeychainInstaller {
 public:
  // `guest` is not owned and must outlive the installer. `security` is the guest's security tool.
  explicit KeychainInstaller(vm::Guest* guest, std::string security = "security");
  // Runs Cleanup() if Install left anything behind and Cleanup was not called.
  ~KeychainInstaller();
  KeychainInstaller(const KeychainInstaller&) = delete;
  KeychainInstaller& operator=(const KeychainInstaller&) = delete;

  // Sequence: temp dir (0700) -> upload P12 and profiles -> save the user search list -> create a
  // keychain with a random password -> unlock -> lock timeout 6 h -> import the P12 (-T codesign,
  // -T security) -> set-key-partition-list (apple-tool:,apple:,codesign:) -> add the keychain to the
  // search list -> profiles as <UUID>.mobileprovision in the classic and the Xcode 16 folders ->
  // find-identity must list the P12's certificate (else FAILED_PRECONDITION listing what was found).
  // Returns the environment for build steps. Whatever was done before a failure is undone by Cleanup.
  absl::StatusOr<std::map<std::string, std::string>> Install(const KeychainInstallRequest& request);

  // Restores the search list, deletes the keychain, removes the profiles this installer created, the
  // credentials file and the temp dir. Every undo step runs even when an earlier one fails (the first
  // error is returned); not cancellable, bounded by its own timeout. Idempotent.
  absl::Status Cleanup();

 private:
  struct Output {
    std::string out;
    std::string err;
  };
  // Runs a shell command (no secrets in it) and returns its output; errors name `what`.
  absl::StatusOr<Output> Run(const std::string& what, const std::string& command,
                             const std::optional<std::string>& stdin_data, const Deadline& deadline,
                             const CancellationToken& cancel);
  // Runs one `security -i` session fed `line` on stdin.
  absl::Status SecurityInteractive(const std::string& what, const std::string& line, const Deadline& deadline,
                                   const CancellationToken& cancel);

  vm::Guest* guest_;
  std::string security_;

  // What Install did, for Cleanup.
  std::string temp_dir_;
  std::string keychain_;
  bool keychain_created_ = false;
  bool search_list_saved_ = false;
  std::vector<std::string> saved_search_list_;
  bool search_list_changed_ = false;
  std::vector<std::string> installed_profiles_;
  std::string credentials_path_;
};

}  // namespace freeagent::signing
