#include "cli/commands.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "cli/blob_transfer.h"
#include "cli/client.h"
#include "cli/follow.h"
#include "cli/format.h"
#include "cli/progress.h"
#include "common/archive.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "freeagent/v1/blob.grpc.pb.h"
#include "freeagent/v1/build.grpc.pb.h"
#include "freeagent/v1/fleet.grpc.pb.h"
#include "proto/grpc_status.h"

namespace freeagent::cli {
namespace {

using freeagent::v1::ArtifactInfo;
using freeagent::v1::BlobService;
using freeagent::v1::Build;
using freeagent::v1::BuildService;
using freeagent::v1::FleetService;

void Out(const std::string& text) {
  std::fputs(text.c_str(), stdout);
  std::fflush(stdout);
}

void Err(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

absl::Status FromGrpc(const grpc::Status& status) { return freeagent::proto::FromGrpcStatus(status); }

absl::StatusOr<Build> GetBuild(BuildService::Stub* builds, const std::string& id) {
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  freeagent::v1::GetBuildRequest request;
  request.set_id(id);
  Build build;
  RETURN_IF_ERROR(FromGrpc(builds->Get(&context, request, &build)));
  return build;
}

// A temp file for the source archive, removed when the command ends.
class TempFile {
 public:
  static absl::StatusOr<TempFile> Create(const std::string& prefix, const std::string& suffix) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string path = absl::StrCat(tmpdir != nullptr && tmpdir[0] != '\0' ? tmpdir : "/tmp", "/",
                                    prefix, "XXXXXX", suffix);
    int fd = mkstemps(path.data(), static_cast<int>(suffix.size()));
    if (fd < 0) return ErrnoStatus(errno, "mkstemps", path);
    close(fd);
    return TempFile(path);
  }
  TempFile(TempFile&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Packs, hashes and uploads the project; returns the source digest.
absl::StatusOr<std::string> UploadSource(BlobService::Stub* blobs, const std::string& dir) {
  PackOptions pack;
  ASSIGN_OR_RETURN(pack.exclude_globs, ReadIgnoreFile(dir));
  ASSIGN_OR_RETURN(TempFile archive, TempFile::Create("freeagent-source-", ".tar.gz"));
  ASSIGN_OR_RETURN(PackStats stats, PackDirectory(dir, archive.path(), pack));
  ASSIGN_OR_RETURN(std::string digest, Sha256File(archive.path()));
  struct stat st;
  if (stat(archive.path().c_str(), &st) != 0) return ErrnoStatus(errno, "stat", archive.path());
  uint64_t size = static_cast<uint64_t>(st.st_size);
  Err(absl::StrCat("==> packed ", stats.files, " files (", HumanBytes(stats.bytes_in), ") into ",
                   HumanBytes(size), ", sha256 ", digest.substr(0, 12)));
  RETURN_IF_ERROR(UploadFile(blobs, archive.path(), digest, size).status());
  return digest;
}

// Artifacts downloaded while their build ran, by path in the workspace: the verified artifact and the file.
struct Fetched {
  ArtifactInfo info;
  std::string path;
};
using FetchedMap = std::map<std::string, Fetched>;

// True when the running attempt of `build` has stored all its artifacts: it is cleaning up after the
// upload phase, and every artifact it announced is stored (has its sha256).
bool ArtifactsComplete(const Build& build) {
  if (build.phase() != freeagent::v1::PHASE_CLEANING_UP) return false;
  bool uploaded = false;
  for (const auto& e : build.events()) {
    uploaded = uploaded || (e.attempt() == build.attempt() && e.phase() == freeagent::v1::PHASE_UPLOADING_ARTIFACTS);
  }
  if (!uploaded) return false;
  for (const ArtifactInfo& a : build.uploading_artifacts()) {
    if (a.sha256().empty()) return false;
  }
  return true;
}

// How long an upload the controller does not know is asked for again (an announced upload whose
// first bytes have not arrived), and how long the controller may be unreachable (a restart).
constexpr auto kFollowRetry = std::chrono::seconds(30);

// Polls build `id` until it ends, downloading each artifact as soon as its upload is announced
// (Build.uploading_artifacts), so the download overlaps the upload. An upload the controller does not
// know, or a follow cut by a controller restart, is asked for again at the next polls (for
// kFollowRetry); once the build lists that artifact as stored it is downloaded by digest at once,
// keeping the bytes followed. Any other failed download is only reported: DownloadAll fetches that
// artifact by digest afterwards. Returns the ended build, or, once the running attempt has stored all
// its artifacts (ArtifactsComplete), the build with those as its artifacts, without waiting for the
// machine's clean-up. `fetched` gets what arrived; `parts` gets the part file of each follow begun.
absl::StatusOr<Build> FollowArtifacts(BuildService::Stub* builds, BlobService::Stub* blobs, const std::string& id,
                                      const std::string& dir, bool force, bool show_progress, FetchedMap* fetched,
                                      std::set<std::string>* parts) {
  using Clock = std::chrono::steady_clock;
  struct Retry {
    std::string upload_id;
    Clock::time_point until;
  };
  std::set<std::string> tried;       // upload ids followed to their end or given up on
  std::map<std::string, Retry> retry;  // by artifact path: a follow to try again
  auto unreachable_until = Clock::time_point::max();
  DownloadOptions options;
  options.force = force;
  options.show_progress = show_progress;
  for (;;) {
    absl::StatusOr<Build> got = GetBuild(builds, id);
    if (!got.ok()) {
      if (!absl::IsUnavailable(got.status())) return got.status();
      if (unreachable_until == Clock::time_point::max()) unreachable_until = Clock::now() + kFollowRetry;
      if (Clock::now() >= unreachable_until) return got.status();
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    unreachable_until = Clock::time_point::max();
    Build& build = *got;
    if (IsTerminal(build.state())) return build;
    if (ArtifactsComplete(build)) {
      *build.mutable_artifacts() = build.uploading_artifacts();
      return build;
    }
    bool started = false;
    for (const ArtifactInfo& a : build.uploading_artifacts()) {
      auto again = retry.find(a.path());
      ArtifactInfo stored;
      absl::StatusOr<std::string> path;
      if (!a.sha256().empty()) {
        // Stored: taken now only when its follow could not go on; the rest come with DownloadAll.
        if (again == retry.end()) continue;
        DownloadOptions by_digest = options;
        by_digest.followed_upload_id = again->second.upload_id;
        retry.erase(again);
        path = DownloadArtifact(blobs, a, dir, by_digest, &stored);
      } else {
        if (a.upload_id().empty() || tried.count(a.upload_id()) > 0) continue;
        if (absl::StatusOr<std::string> part = FollowedPartPath(a, dir, a.upload_id()); part.ok()) {
          parts->insert(*std::move(part));
        }
        path = DownloadArtifact(blobs, a, dir, options, &stored);
        const auto now = Clock::now();
        const bool same = again != retry.end() && again->second.upload_id == a.upload_id();
        if (!path.ok() && (absl::IsNotFound(path.status()) || absl::IsUnavailable(path.status())) &&
            (!same || now < again->second.until)) {
          if (!same) retry[a.path()] = Retry{a.upload_id(), now + kFollowRetry};
          continue;  // asked again at the next poll
        }
        tried.insert(a.upload_id());
        retry.erase(a.path());
      }
      started = true;
      if (path.ok()) {
        (*fetched)[a.path()] = Fetched{stored, *path};
      } else if (absl::IsAborted(path.status())) {
        Err(absl::StrCat("==> artifact ", a.path(), ": ", path.status().message()));
      } else {
        Err(absl::StrCat("==> artifact ", a.path(), ": the download during its upload failed (",
                         path.status().message(), "); it is fetched again when the build ends"));
      }
    }
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Removes, when the command ends, the part files of followed uploads (FollowArtifacts `parts`): a
// follow that ended well renamed its file into place, and the bytes of one given up on that the
// download by digest took over live on under that download's own part file (a hard link).
class FollowedParts {
 public:
  FollowedParts() = default;
  FollowedParts(const FollowedParts&) = delete;
  FollowedParts& operator=(const FollowedParts&) = delete;
  ~FollowedParts() {
    for (const std::string& part : parts_) unlink(part.c_str());  // ENOENT: renamed into place
  }
  std::set<std::string>* get() { return &parts_; }

 private:
  std::set<std::string> parts_;
};

// Downloads every artifact of `build`. Reports each as "<sha256>  <path>" (sha256sum format) on
// stdout, or as a "==>" line on stderr when stdout carries the log (`to_stderr`). Artifacts in
// `fetched` with the same sha256 are not downloaded again.
absl::Status DownloadAll(BlobService::Stub* blobs, const Build& build, const std::string& dir,
                         bool force, bool json, bool to_stderr, const FetchedMap& fetched = {}) {
  if (build.artifacts_size() == 0) {
    Err(absl::StrCat("==> build ", build.id(), " has no artifacts"));
    return absl::OkStatus();
  }
  DownloadOptions options;
  options.force = force;
  for (const auto& artifact : build.artifacts()) {
    if (artifact.expired_unix_ms() != 0) {
      return absl::NotFoundError(absl::StrCat("artifact ", artifact.path(), " of build ", build.id(),
                                              " was removed by the controller's retention"));
    }
  }
  for (const auto& artifact : build.artifacts()) {
    auto early = fetched.find(artifact.path());
    std::string path;
    if (early != fetched.end() && early->second.info.sha256() == artifact.sha256()) {
      path = early->second.path;
    } else {
      ASSIGN_OR_RETURN(path, DownloadArtifact(blobs, artifact, dir, options));
    }
    if (to_stderr) {
      Err(absl::StrCat("==> downloaded ", path, " (", HumanBytes(artifact.size()), ", sha256 ",
                       artifact.sha256(), ")"));
    } else if (json) {
      Out(ToJson(artifact) + "\n");
    } else {
      Out(absl::StrCat(artifact.sha256(), "  ", path, "\n"));
    }
    // The description goes to stderr so stdout stays `sha256sum -c` input.
    if (!json) {
      for (const std::string& line : DescribeArtifact(artifact)) Err(absl::StrCat("==>   ", line));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> Commands::Submit(const SubmitOptions& options) {
  ASSIGN_OR_RETURN(freeagent::v1::JobSpec spec, LoadProjectSpec(options.dir));
  RETURN_IF_ERROR(ApplyOverrides(options.overrides, &spec));

  auto blobs = BlobService::NewStub(channel_);
  auto builds = BuildService::NewStub(channel_);
  RETURN_IF_ERROR(AttachSigning(options.signing, blobs.get(), &spec));
  ASSIGN_OR_RETURN(std::string digest, UploadSource(blobs.get(), options.dir));
  spec.set_source_digest(digest);

  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  freeagent::v1::SubmitRequest request;
  *request.mutable_spec() = spec;
  Build build;
  RETURN_IF_ERROR(FromGrpc(builds->Submit(&context, request, &build)));

  bool wait = options.follow || !options.download_dir.empty();
  if (!wait) {
    Out(options.json ? ToJson(build) + "\n" : build.id() + "\n");
    return kExitOk;
  }
  if (options.follow) {
    // stdout carries the log bytes only, so the id goes to stderr.
    Err(absl::StrCat("==> build ", build.id(), " submitted (", spec.name(), ")"));
  } else {
    Out(build.id() + "\n");
  }

  FollowOptions follow;
  follow.log = options.follow;
  follow.status = options.follow;
  follow.json = options.follow && options.json;
  // Artifacts are downloaded while they are uploaded, next to the followed build.
  FetchedMap fetched;
  FollowedParts parts;
  std::thread early_downloads;
  if (!options.download_dir.empty()) {
    early_downloads = std::thread([&] {
      FollowArtifacts(builds.get(), blobs.get(), build.id(), options.download_dir, options.force,
                      /*show_progress=*/false, &fetched, parts.get())
          .IgnoreError();  // whatever did not arrive is downloaded below
    });
  }
  absl::StatusOr<Build> followed = FollowBuild(builds.get(), build.id(), follow);
  if (early_downloads.joinable()) early_downloads.join();
  ASSIGN_OR_RETURN(Build final_build, std::move(followed));
  if (!options.follow && final_build.state() != freeagent::v1::JOB_STATE_SUCCEEDED) {
    Err(StatusLine(final_build));
  }
  if (!options.download_dir.empty()) {
    RETURN_IF_ERROR(DownloadAll(blobs.get(), final_build, options.download_dir, options.force,
                                /*json=*/false, /*to_stderr=*/options.follow, fetched));
  }
  return final_build.state() == freeagent::v1::JOB_STATE_SUCCEEDED ? kExitOk : kExitBuildFailed;
}

absl::StatusOr<int> Commands::Watch(const std::string& id, bool json) {
  auto builds = BuildService::NewStub(channel_);
  FollowOptions follow;
  follow.json = json;
  ASSIGN_OR_RETURN(Build build, FollowBuild(builds.get(), id, follow));
  return build.state() == freeagent::v1::JOB_STATE_SUCCEEDED ? kExitOk : kExitBuildFailed;
}

absl::StatusOr<int> Commands::Logs(const std::string& id, bool follow_live) {
  auto builds = BuildService::NewStub(channel_);
  FollowOptions follow;
  follow.status = false;
  if (!follow_live) {
    // A running build's log is printed up to its current size; a finished one's Watch stream
    // ends by itself after the whole log.
    ASSIGN_OR_RETURN(Build build, GetBuild(builds.get(), id));
    if (!IsTerminal(build.state())) {
      follow.stop_at_log_size = static_cast<int64_t>(build.log_size());
      follow.stop_attempt = build.attempt();
    }
  }
  RETURN_IF_ERROR(FollowBuild(builds.get(), id, follow).status());
  return kExitOk;
}

absl::StatusOr<int> Commands::Show(const std::string& id, bool json) {
  auto builds = BuildService::NewStub(channel_);
  ASSIGN_OR_RETURN(Build build, GetBuild(builds.get(), id));
  Out(json ? ToJson(build) + "\n" : FormatBuildDetails(build));
  return kExitOk;
}

absl::StatusOr<int> Commands::List(const std::vector<std::string>& states, uint32_t limit,
                                   bool json) {
  auto builds = BuildService::NewStub(channel_);
  freeagent::v1::ListBuildsRequest request;
  for (const std::string& s : states) {
    ASSIGN_OR_RETURN(freeagent::v1::JobState state, ParseState(s));
    request.add_states(state);
  }
  request.set_page_size(limit);
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  freeagent::v1::ListBuildsResponse response;
  RETURN_IF_ERROR(FromGrpc(builds->List(&context, request, &response)));
  if (json) {
    Out(ToJson(response) + "\n");
  } else {
    Out(FormatBuildTable({response.builds().begin(), response.builds().end()}));
  }
  return kExitOk;
}

absl::StatusOr<int> Commands::Cancel(const std::string& id, const std::string& reason, bool json) {
  auto builds = BuildService::NewStub(channel_);
  freeagent::v1::CancelBuildRequest request;
  request.set_id(id);
  request.set_reason(reason);
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  Build build;
  RETURN_IF_ERROR(FromGrpc(builds->Cancel(&context, request, &build)));
  Out(json ? ToJson(build) + "\n" : absl::StrCat(build.id(), " ", StateName(build.state()), "\n"));
  return kExitOk;
}

absl::StatusOr<int> Commands::Artifacts(const std::string& id, const std::string& dir, bool force,
                                        bool json) {
  auto builds = BuildService::NewStub(channel_);
  auto blobs = BlobService::NewStub(channel_);
  ASSIGN_OR_RETURN(Build build, GetBuild(builds.get(), id));
  // A running build's artifacts are downloaded as their uploads start; the command ends with the build.
  FetchedMap fetched;
  FollowedParts parts;
  if (!IsTerminal(build.state())) {
    ASSIGN_OR_RETURN(build, FollowArtifacts(builds.get(), blobs.get(), id, dir, force, /*show_progress=*/true,
                                            &fetched, parts.get()));
  }
  RETURN_IF_ERROR(DownloadAll(blobs.get(), build, dir, force, json, /*to_stderr=*/false, fetched));
  return kExitOk;
}

absl::StatusOr<int> Commands::Gc(bool apply, bool json) {
  auto builds = BuildService::NewStub(channel_);
  freeagent::v1::CollectGarbageRequest request;
  request.set_apply(apply);
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  freeagent::v1::CollectGarbageResponse response;
  RETURN_IF_ERROR(FromGrpc(builds->CollectGarbage(&context, request, &response)));
  Out(json ? ToJson(response) + "\n" : FormatGarbage(response));
  return kExitOk;
}

absl::StatusOr<int> Commands::Workers(bool json) {
  auto fleet = FleetService::NewStub(channel_);
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  freeagent::v1::ListWorkersResponse response;
  RETURN_IF_ERROR(FromGrpc(fleet->ListWorkers(&context, {}, &response)));
  if (json) {
    Out(ToJson(response) + "\n");
  } else {
    Out(FormatWorkerTable({response.workers().begin(), response.workers().end()}, UnixMillis()));
  }
  return kExitOk;
}

absl::StatusOr<int> Commands::Drain(const std::string& worker, uint32_t timeout_seconds,
                                    bool json) {
  auto fleet = FleetService::NewStub(channel_);
  // Accept a worker's name as well as its id, as long as the name is unambiguous.
  std::string worker_id = worker;
  {
    grpc::ClientContext context;
    SetUnaryDeadline(&context);
    freeagent::v1::ListWorkersResponse response;
    RETURN_IF_ERROR(FromGrpc(fleet->ListWorkers(&context, {}, &response)));
    int by_id = 0, by_name = 0;
    std::string named;
    for (const auto& w : response.workers()) {
      if (w.id() == worker) ++by_id;
      if (w.name() == worker) {
        ++by_name;
        named = w.id();
      }
    }
    if (by_id == 0 && by_name == 1) worker_id = named;
  }
  freeagent::v1::DrainRequest request;
  request.set_worker_id(worker_id);
  request.set_timeout_seconds(timeout_seconds);
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  freeagent::v1::WorkerInfo info;
  RETURN_IF_ERROR(FromGrpc(fleet->Drain(&context, request, &info)));
  Out(json ? ToJson(info) + "\n"
           : absl::StrCat(info.id(), " ", WorkerStateName(info.state()), " (", info.slots_used(),
                          " running)\n"));
  return kExitOk;
}

}  // namespace freeagent::cli
