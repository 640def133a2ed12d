// bench_ssh_transfer: our SSH file transfers (SshGuest) side by side with the OpenSSH clients, against
// the same sshd (tests/support SshdFixture on 127.0.0.1), with the same files, in the same run.
//
//   bench_ssh_transfer [--mb 200] [--files 10000] [--runs 3]
//
// 1. Upload of a --mb MB random file: SshGuest::Upload vs `ssh host 'cat > f' < file` and vs `scp`.
// 2. Download of that file: SshGuest::Download vs `sftp -b -` with `get`.
// 3. A tree of --files small files: SshGuest::UploadDirectory vs `tar -cf - . | ssh host 'tar -xf -'`.
//
// Every timed run starts from nothing: ours connects a fresh session inside the timed region, as each
// OpenSSH client does, so both sides pay for TCP, key exchange and auth. Runs of ours and OpenSSH
// alternate so that load from other processes on the machine falls on both. The best of --runs is
// compared; all runs are printed.
//
// Results are checked after every run, outside the timed region: the received big file is hashed from
// disk (the server runs on this host, so the remote path is readable here) and must equal the digest of
// the source, and ours must also report that digest from the sha256 it computed on the way. A received
// tree must match the source in paths, types, modes and contents. Any mismatch or failed transfer ends
// the benchmark with exit status 2; a missed speed goal is reported but is not an error.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cancellation.h"
#include "common/fs.h"
#include "common/process.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "tests/support/sshd_fixture.h"
#include "tests/support/sshd_guest_config.h"
#include "vm/ssh_guest.h"

namespace {

using freeagent::CancellationToken;
using freeagent::testing::SshdFixture;
using freeagent::vm::ShellQuote;
using freeagent::vm::SshGuest;
using Clock = std::chrono::steady_clock;

struct Options {
  uint64_t mb = 200;
  int files = 10000;
  int runs = 3;
};

// Writes `fd` fully; plain writes, no fsync (the page cache is part of what a real job sees too).
absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return freeagent::ErrnoStatus(errno, "write", path);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteRandomFile(const std::string& path, uint64_t bytes, std::mt19937_64& rng, int mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return freeagent::ErrnoStatus(errno, "create", path);
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  std::vector<uint64_t> block(1 << 17);  // 1 MiB
  while (bytes > 0) {
    for (uint64_t& word : block) word = rng();
    size_t n = static_cast<size_t>(std::min<uint64_t>(bytes, block.size() * sizeof(uint64_t)));
    RETURN_IF_ERROR(WriteAll(fd, reinterpret_cast<const char*>(block.data()), n, path));
    bytes -= n;
  }
  if (::fchmod(fd, mode) != 0) return freeagent::ErrnoStatus(errno, "chmod", path);
  return absl::OkStatus();
}

// `files` files of 1..4096 bytes spread over 100 directories; every tenth is executable.
absl::Status MakeTree(const std::string& root, int files, std::mt19937_64& rng) {
  constexpr int kDirs = 100;
  for (int d = 0; d < kDirs; ++d) RETURN_IF_ERROR(freeagent::MakeDirs(absl::StrCat(root, "/d", d)));
  std::uniform_int_distribution<uint64_t> size(1, 4096);
  for (int i = 0; i < files; ++i) {
    std::string path = absl::StrCat(root, "/d", i % kDirs, "/f", i, ".dat");
    RETURN_IF_ERROR(WriteRandomFile(path, size(rng), rng, i % 10 == 0 ? 0755 : 0644));
  }
  return absl::OkStatus();
}

// One digest over the relative paths, types, permission bits and contents of everything under `root`.
absl::StatusOr<std::string> TreeDigest(const std::string& root) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<std::string> entries;
  for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    entries.push_back(fs::relative(it->path(), root).string());
  }
  if (ec) return absl::InternalError(absl::StrCat("walking ", root, ": ", ec.message()));
  std::sort(entries.begin(), entries.end());
  freeagent::Sha256 digest;
  for (const std::string& rel : entries) {
    std::string path = root + "/" + rel;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return freeagent::ErrnoStatus(errno, "stat", path);
    digest.Update(absl::StrCat(rel, "\n", st.st_mode & (S_IFMT | 07777), "\n"));
    if (S_ISREG(st.st_mode)) {
      ASSIGN_OR_RETURN(std::string data, freeagent::ReadFile(path));
      digest.Update(absl::StrCat(data.size(), "\n"));
      digest.Update(data);
    }
  }
  return absl::StrCat(entries.size(), " entries, sha256 ", digest.FinishHex());
}

absl::Status ExpectFileDigest(const std::string& path, const std::string& want) {
  ASSIGN_OR_RETURN(std::string got, freeagent::Sha256File(path));
  if (got != want) return absl::DataLossError(absl::StrCat(path, ": sha256 ", got, ", expected ", want));
  return absl::OkStatus();
}

absl::Status ExpectReported(const freeagent::vm::TransferResult& result, uint64_t size,
                            const std::string& sha256) {
  if (result.size != size || result.sha256 != sha256) {
    return absl::DataLossError(absl::StrCat("transfer reported ", result.size, " bytes sha256 ", result.sha256,
                                            ", expected ", size, " bytes sha256 ", sha256));
  }
  return absl::OkStatus();
}

// Runs an OpenSSH client (or a shell pipeline around one); a non-zero exit is an error with its stderr.
absl::Status Run(std::vector<std::string> argv, std::optional<std::string> stdin_data = std::nullopt) {
  freeagent::ProcessOptions options;
  std::string name = argv.size() > 2 && argv[0] == "/bin/sh" ? argv[2] : argv[0];
  options.argv = std::move(argv);
  options.stdin_data = std::move(stdin_data);
  options.deadline = freeagent::Deadline::After(std::chrono::minutes(10));
  ASSIGN_OR_RETURN(freeagent::ProcessResult result, freeagent::RunProcess(std::move(options)));
  if (!result.Succeeded()) {
    return absl::InternalError(absl::StrCat("`", name, "` failed (exit ", result.exit_code, ", signal ",
                                            result.term_signal, "): ", result.stderr_data));
  }
  return absl::OkStatus();
}

// The timed runs of one side of one comparison.
struct Series {
  explicit Series(std::string name) : name(std::move(name)) {}
  std::string name;
  std::vector<double> seconds;
  double Best() const { return *std::min_element(seconds.begin(), seconds.end()); }
};

class Bench {
 public:
  Bench(const SshdFixture& sshd, std::string work, Options options)
      : sshd_(sshd), work_(std::move(work)), options_(options) {}

  absl::Status Prepare();
  absl::Status UploadComparison();
  absl::Status DownloadComparison();
  absl::Status TreeComparison();
  // Source files still as generated; called last.
  absl::Status CheckSources();
  void PrintTable() const;

 private:
  struct Row {
    Row(std::string operation, std::string ours_name, std::string theirs_name)
        : operation(std::move(operation)), ours(std::move(ours_name)), theirs(std::move(theirs_name)) {}
    std::string operation;
    Series ours;
    Series theirs;
  };

  absl::StatusOr<std::unique_ptr<SshGuest>> Connect() const;
  std::string Target() const { return absl::StrCat(sshd_.user(), "@127.0.0.1"); }
  // ssh takes the port as -p; scp and sftp take it as -P.
  std::vector<std::string> ClientArgs(const char* port_flag) const;
  // Times `body`, then checks with `verify` and cleans up with `reset` (both untimed).
  absl::Status Measure(Series& series, int run, const std::function<absl::Status()>& body,
                       const std::function<absl::Status()>& verify, const std::function<void()>& reset);

  const SshdFixture& sshd_;
  std::string work_;
  Options options_;
  std::string big_;          // the random file, the source of uploads and downloads
  std::string big_sha256_;
  uint64_t big_size_ = 0;
  std::string tree_;         // the small-file tree
  std::string tree_digest_;
  std::string remote_;       // where uploads land on the server side
  std::string received_;     // where downloads land here
  std::vector<Row> rows_;
};

absl::Status Bench::Prepare() {
  std::mt19937_64 rng(20261127);
  big_ = work_ + "/big.bin";
  big_size_ = options_.mb * 1000 * 1000;
  tree_ = work_ + "/tree";
  remote_ = work_ + "/remote";
  received_ = work_ + "/received";
  RETURN_IF_ERROR(freeagent::MakeDirs(remote_));
  RETURN_IF_ERROR(freeagent::MakeDirs(received_));

  auto start = Clock::now();
  RETURN_IF_ERROR(WriteRandomFile(big_, big_size_, rng, 0644));
  ASSIGN_OR_RETURN(big_sha256_, freeagent::Sha256File(big_));
  RETURN_IF_ERROR(MakeTree(tree_, options_.files, rng));
  ASSIGN_OR_RETURN(tree_digest_, TreeDigest(tree_));
  std::printf("files: %s (%llu bytes, sha256 %s), %s (%d files: %s), made in %.1f s\n", big_.c_str(),
              static_cast<unsigned long long>(big_size_), big_sha256_.c_str(), tree_.c_str(), options_.files,
              tree_digest_.c_str(), std::chrono::duration<double>(Clock::now() - start).count());
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SshGuest>> Bench::Connect() const {
  return SshGuest::Connect(freeagent::testing::GuestConfigFor(sshd_), CancellationToken::None());
}

std::vector<std::string> Bench::ClientArgs(const char* port_flag) const {
  std::vector<std::string> args = sshd_.SshClientArgs();
  for (std::string& arg : args) {
    if (arg == "-p") arg = port_flag;
  }
  return args;
}

absl::Status Bench::Measure(Series& series, int run, const std::function<absl::Status()>& body,
                            const std::function<absl::Status()>& verify, const std::function<void()>& reset) {
  auto start = Clock::now();
  absl::Status status = body();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (status.ok()) status = verify();
  reset();
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(series.name, ", run ", run, ": ", status.message()));
  series.seconds.push_back(seconds);
  std::printf("  %-34s run %d: %7.3f s  verified\n", series.name.c_str(), run, seconds);
  std::fflush(stdout);
  return absl::OkStatus();
}

absl::Status Bench::UploadComparison() {
  const std::string dest = remote_ + "/upload.bin";
  const std::string size = absl::StrCat(options_.mb, " MB");
  Row vs_cat(absl::StrCat("upload ", size, " vs ssh cat"), "ours (SshGuest::Upload)", "ssh 'cat > f' < file");
  Row vs_scp(absl::StrCat("upload ", size, " vs scp"), "ours (SshGuest::Upload)", "scp");
  std::printf("\nupload %s\n", size.c_str());

  freeagent::vm::TransferResult reported;
  auto ours = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto guest, Connect());
    ASSIGN_OR_RETURN(reported, guest->Upload(big_, dest, 0644, CancellationToken::None()));
    return absl::OkStatus();
  };
  auto verify_ours = [&]() -> absl::Status {
    RETURN_IF_ERROR(ExpectReported(reported, big_size_, big_sha256_));
    return ExpectFileDigest(dest, big_sha256_);
  };
  auto verify = [&] { return ExpectFileDigest(dest, big_sha256_); };
  auto reset = [&] { ::unlink(dest.c_str()); };

  std::vector<std::string> ssh = {"ssh"};
  for (std::string& arg : ClientArgs("-p")) ssh.push_back(ShellQuote(arg));
  ssh.push_back(ShellQuote(Target()));
  ssh.push_back(ShellQuote("cat > " + ShellQuote(dest)));
  const std::string ssh_cat = absl::StrCat("exec ", absl::StrJoin(ssh, " "), " < ", ShellQuote(big_));

  std::vector<std::string> scp = {"scp", "-q"};
  for (std::string& arg : ClientArgs("-P")) scp.push_back(arg);
  scp.push_back(big_);
  scp.push_back(absl::StrCat(Target(), ":", dest));

  for (int run = 1; run <= options_.runs; ++run) {
    RETURN_IF_ERROR(Measure(vs_cat.ours, run, ours, verify_ours, reset));
    RETURN_IF_ERROR(Measure(vs_cat.theirs, run, [&] { return Run({"/bin/sh", "-c", ssh_cat}); }, verify, reset));
    RETURN_IF_ERROR(Measure(vs_scp.theirs, run, [&] { return Run(scp); }, verify, reset));
  }
  // One set of our runs stands against both OpenSSH clients.
  vs_scp.ours = vs_cat.ours;
  rows_.push_back(std::move(vs_cat));
  rows_.push_back(std::move(vs_scp));
  return absl::OkStatus();
}

absl::Status Bench::DownloadComparison() {
  const std::string dest = received_ + "/download.bin";
  Row row(absl::StrCat("download ", options_.mb, " MB vs sftp get"), "ours (SshGuest::Download)",
          "sftp -b - (get)");
  std::printf("\ndownload %llu MB\n", static_cast<unsigned long long>(options_.mb));

  freeagent::vm::TransferResult reported;
  auto ours = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto guest, Connect());
    ASSIGN_OR_RETURN(reported, guest->Download(big_, dest, 0, CancellationToken::None()));
    return absl::OkStatus();
  };
  auto verify_ours = [&]() -> absl::Status {
    RETURN_IF_ERROR(ExpectReported(reported, big_size_, big_sha256_));
    return ExpectFileDigest(dest, big_sha256_);
  };
  auto verify = [&] { return ExpectFileDigest(dest, big_sha256_); };
  auto reset = [&] { ::unlink(dest.c_str()); };

  std::vector<std::string> sftp = {"sftp", "-q", "-b", "-"};
  for (std::string& arg : ClientArgs("-P")) sftp.push_back(arg);
  sftp.push_back(Target());
  // sftp's batch syntax takes double-quoted paths; ours are temp paths without quotes or backslashes.
  const std::string batch = absl::StrCat("get \"", big_, "\" \"", dest, "\"\n");

  for (int run = 1; run <= options_.runs; ++run) {
    RETURN_IF_ERROR(Measure(row.ours, run, ours, verify_ours, reset));
    RETURN_IF_ERROR(Measure(row.theirs, run, [&] { return Run(sftp, batch); }, verify, reset));
  }
  rows_.push_back(std::move(row));
  return absl::OkStatus();
}

absl::Status Bench::TreeComparison() {
  const std::string dest = remote_ + "/tree";
  Row row(absl::StrCat("tree of ", options_.files, " files vs tar | ssh tar"), "ours (SshGuest::UploadDirectory)",
          "tar -cf - . | ssh 'tar -xf -'");
  std::printf("\ntree of %d files\n", options_.files);

  auto ours = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto guest, Connect());
    return guest->UploadDirectory(tree_, dest, CancellationToken::None());
  };
  // The pipeline's exit status is only ssh's (no pipefail in dash); a failed tar shows up here.
  auto verify = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(std::string got, TreeDigest(dest));
    if (got != tree_digest_) {
      return absl::DataLossError(absl::StrCat(dest, ": ", got, ", expected ", tree_digest_));
    }
    return absl::OkStatus();
  };
  auto reset = [&] { freeagent::RemoveTree(dest).IgnoreError(); };

  std::vector<std::string> ssh = {"ssh"};
  for (std::string& arg : ClientArgs("-p")) ssh.push_back(ShellQuote(arg));
  ssh.push_back(ShellQuote(Target()));
  ssh.push_back(ShellQuote(absl::StrCat("mkdir -p ", ShellQuote(dest), " && tar -xf - -C ", ShellQuote(dest))));
  const std::string pipeline =
      absl::StrCat("tar -C ", ShellQuote(tree_), " -cf - . | ", absl::StrJoin(ssh, " "));

  for (int run = 1; run <= options_.runs; ++run) {
    RETURN_IF_ERROR(Measure(row.ours, run, ours, verify, reset));
    RETURN_IF_ERROR(Measure(row.theirs, run, [&] { return Run({"/bin/sh", "-c", pipeline}); }, verify, reset));
  }
  rows_.push_back(std::move(row));
  return absl::OkStatus();
}

absl::Status Bench::CheckSources() {
  RETURN_IF_ERROR(ExpectFileDigest(big_, big_sha256_));
  ASSIGN_OR_RETURN(std::string tree, TreeDigest(tree_));
  if (tree != tree_digest_) return absl::DataLossError(absl::StrCat(tree_, " changed during the benchmark"));
  return absl::OkStatus();
}

void Bench::PrintTable() const {
  std::printf("\nbest of %d runs; ratio = ours / OpenSSH, goal <= 1.0\n", options_.runs);
  std::printf("%-38s %9s %9s %7s %6s %s\n", "operation", "ours s", "OpenSSH s", "ratio", "goal", "");
  for (const Row& row : rows_) {
    double ours = row.ours.Best();
    double theirs = row.theirs.Best();
    double ratio = ours / theirs;
    std::printf("%-38s %9.3f %9.3f %7.2f %6s %s\n", row.operation.c_str(), ours, theirs, ratio, "<= 1.0",
                ratio <= 1.0 ? "met" : "MISSED");
  }
}

std::string OpenSshVersion() {
  freeagent::ProcessOptions options;
  options.argv = {"ssh", "-V"};
  auto result = freeagent::RunProcess(std::move(options));
  if (!result.ok()) return "ssh: " + result.status().ToString();
  std::string text = result->stderr_data + result->stdout_data;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

bool ParseOptions(int argc, char** argv, Options* options) {
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    long value = std::strtol(argv[i + 1], nullptr, 10);
    if (value <= 0) return false;
    if (flag == "--mb") options->mb = static_cast<uint64_t>(value);
    else if (flag == "--files") options->files = static_cast<int>(value);
    else if (flag == "--runs") options->runs = static_cast<int>(value);
    else return false;
  }
  return argc % 2 == 1;
}

// Everything from server start to the table; the fixture and the temp dir are released on every path.
absl::Status RunBenchmark(const Options& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<SshdFixture> sshd, SshdFixture::Start());
  ASSIGN_OR_RETURN(std::string work, freeagent::MakePrivateTempDir("/tmp", "bench-ssh-"));
  absl::Cleanup remove_work = [&work] { freeagent::RemoveTree(work).IgnoreError(); };

  std::printf("ssh transfer benchmark: sshd pid %d on 127.0.0.1:%d, user %s\n", sshd->pid(), sshd->port(),
              sshd->user().c_str());
  std::printf("OpenSSH client: %s (its default cipher); ours: libssh2 with aes128-ctr\n",
              OpenSshVersion().c_str());
  Bench bench(*sshd, work, options);
  for (auto [what, step] : std::vector<std::pair<const char*, absl::Status (Bench::*)()>>{
           {"preparing files", &Bench::Prepare},
           {"upload", &Bench::UploadComparison},
           {"download", &Bench::DownloadComparison},
           {"tree upload", &Bench::TreeComparison},
           {"source files", &Bench::CheckSources}}) {
    absl::Status status = (bench.*step)();
    if (!status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat(what, ": ", status.message(), "\nsshd log:\n", sshd->LogTail()));
    }
  }
  bench.PrintTable();
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!ParseOptions(argc, argv, &options)) {
    std::fprintf(stderr, "usage: bench_ssh_transfer [--mb 200] [--files 10000] [--runs 3]\n");
    return 2;
  }
  absl::Status status = RunBenchmark(options);
  if (!status.ok()) {
    std::fflush(stdout);
    std::fprintf(stderr, "bench_ssh_transfer: %s\n", status.ToString().c_str());
    return 2;
  }
  return 0;
}
