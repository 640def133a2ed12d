// What the QEMU tests share: the Debian 12 image they boot ($FREEAGENT_TEST_IMAGE, a manifest.json path,
// when set; else the one deploy/images/debian-12/build.sh builds or finds in its cache, once per
// machine), and the host-side checks on QEMU processes.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/process.h"

#ifndef FA_SOURCE_DIR
#error "FA_SOURCE_DIR must name the repository root"
#endif

namespace freeagent::testing {

inline absl::StatusOr<std::string> TestImageManifest() {
  static const absl::StatusOr<std::string> manifest = []() -> absl::StatusOr<std::string> {
    if (const char* env = std::getenv("FREEAGENT_TEST_IMAGE"); env != nullptr && *env != '\0') return std::string(env);
    ProcessOptions o;
    o.argv = {std::string(FA_SOURCE_DIR) + "/deploy/images/debian-12/build.sh", "--quiet"};
    o.deadline = Deadline::After(std::chrono::minutes(40));
    absl::StatusOr<ProcessResult> r = RunProcess(o);
    if (!r.ok()) return r.status();
    if (!r->Succeeded()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the test image could not be built (deploy/images/debian-12/build.sh): ", r->stderr_data));
    }
    return std::string(absl::StripAsciiWhitespace(r->stdout_data));
  }();
  return manifest;
}

// True while `pid` runs (a zombie counts as gone).
inline bool PidAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::optional<ProcStat> stat = ReadProcStat(pid);
  return stat.has_value() && stat->state != 'Z';
}

inline bool PathExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// A QEMU that looks like one the qemu driver started for the VM directory `dir` (its QMP socket and pid
// file there, an overlay beside them), paused so it costs nothing: what a worker killed with -9 leaves
// behind. The caller reaps the returned pid.
inline pid_t StartPausedQemu(const std::string& dir) {
  if (!MakeDirs(dir, 0700).ok() || !WriteFileAtomic(dir + "/overlay.qcow2", "x").ok()) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setsid();
    std::string qmp = "unix:" + dir + "/qmp.sock,server=on,wait=off";
    std::string pidfile = dir + "/qemu.pid";
    ::execlp("qemu-system-x86_64", "qemu-system-x86_64", "-S", "-nodefaults", "-display", "none", "-machine",
             "none", "-qmp", qmp.c_str(), "-pidfile", pidfile.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  for (int i = 0; i < 400 && !PathExists(dir + "/qemu.pid"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return pid;
}

}  // namespace freeagent::testing
