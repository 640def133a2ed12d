// Artifact retention: which artifact blobs the controller removes to keep artifacts for at most N days
// and under M bytes in total. Pure planning over a snapshot of the record (no I/O, no locks), so the
// rules are testable on their own; Controller::CollectGarbage gathers the snapshot and applies the plan.
//
// Rules: blobs are content-addressed and may be shared, so the unit of removal is a digest, aged by the
// newest finished build that references it. A digest referenced by a build that has not finished (as an
// artifact or its source), or listed in `in_use` (touched by a transfer while builds were running), is
// never removed. First every digest older than the age limit goes; then, oldest first, digests go until
// the total is under the size limit.
//
// The inputs of a build (its source archive, P12 and provisioning profiles) are needed only while it
// runs; PlanInputRetention removes them by the same rules once the newest build naming them ended
// input_max_age_days ago. They are not part of the artifacts' size limit.
//
// Blob files no artifact record stands for are aged by their last use alone: a partial upload whose
// sender never came back, a stored blob no build references (its build failed after the upload, or a
// client uploaded a source it never submitted). PlanStale picks those idle for longer than
// partial_upload_max_age_hours.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "freeagent/v1/build.pb.h"

namespace freeagent::controller {

struct RetentionPolicy {
  uint32_t max_age_days = 0;     // 0 = no age limit
  uint64_t max_total_bytes = 0;  // 0 = no size limit
  uint32_t partial_upload_max_age_hours = 24;  // partial uploads and unreferenced blobs; 0 = kept
  uint32_t input_max_age_days = 7;  // sources and signing blobs of finished builds; 0 = kept
};

// One blob a build names, as the record holds it: an artifact, or one of its inputs.
struct BlobRecord {
  std::string build_id;
  int index = 0;                 // position in Build.artifacts (artifacts only)
  std::string kind = "artifact";  // or the input's kind: "source", "p12", "profile"
  v1::ArtifactInfo info;         // name, sha256 and size
  int64_t finished_unix_ms = 0;  // when the build ended; 0 = not finished
};

struct RetentionPlan {
  std::vector<v1::GarbageItem> items;  // every artifact record whose blob goes, oldest first
  std::vector<std::string> digests;    // the blobs to remove
  uint64_t removed_bytes = 0;
  uint64_t kept_bytes = 0;
};

// `records`: every artifact of every build not yet expired. `in_use`: digests that must stay.
RetentionPlan PlanRetention(const std::vector<BlobRecord>& records, const std::set<std::string>& in_use,
                            const RetentionPolicy& policy, int64_t now_unix_ms);

// `inputs`: every input blob of every build that is still stored. `in_use`: digests that must stay
// (those of artifacts among them). Age only: no size limit.
RetentionPlan PlanInputRetention(const std::vector<BlobRecord>& inputs, const std::set<std::string>& in_use,
                                 const RetentionPolicy& policy, int64_t now_unix_ms);

// Artifacts and inputs together. A blob that is both goes only when both uses let it go: the artifacts
// are planned keeping the inputs too recent to go on their own, then the inputs keeping the artifacts
// that stay (each kept for the other's sake alone would keep both for ever). Items oldest first; a
// blob's bytes count once; kept_bytes are the artifacts'.
RetentionPlan PlanBlobRetention(const std::vector<BlobRecord>& artifacts, const std::vector<BlobRecord>& inputs,
                                const std::set<std::string>& in_use, const RetentionPolicy& policy,
                                int64_t now_unix_ms);

// One blob a build reads: its spec field, kind ("source", "p12", "profile"), a name for people, digest.
struct BuildInput {
  std::string field;
  std::string kind;
  std::string name;
  std::string digest;
};
// The source archive, then the signing blobs the spec names.
std::vector<BuildInput> BuildInputs(const v1::JobSpec& spec);

// The Unix ms before which a partial upload or an unreferenced blob counts as stale; INT64_MIN when
// partial_upload_max_age_hours is 0.
int64_t StaleCutoffMs(const RetentionPolicy& policy, int64_t now_unix_ms);

// The files among `candidates` last used before StaleCutoffMs (and before `protect_since_ms`), except
// those named in `keep`, oldest first.
std::vector<v1::StaleBlob> PlanStale(std::vector<v1::StaleBlob> candidates, const std::set<std::string>& keep,
                                     const RetentionPolicy& policy, int64_t now_unix_ms,
                                     int64_t protect_since_ms = INT64_MAX);

}  // namespace freeagent::controller
