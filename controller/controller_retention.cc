// Controller::CollectGarbage: artifact retention over the live record, and the blob files no record
// stands for (the rules are in retention.h).
#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controller/controller.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {

absl::StatusOr<v1::CollectGarbageResponse> Controller::CollectGarbage(bool apply) {
  const int64_t started_ms = UnixMillis();
  // The record does not hold the size of an input; one that is no longer stored is not planned again.
  const absl::StatusOr<std::vector<BlobStore::FileInfo>> stored = blobs_.ListStored();
  std::map<std::string, uint64_t> stored_sizes;
  if (stored.ok()) {
    for (const BlobStore::FileInfo& f : *stored) stored_sizes[f.key] = f.size;
  }
  RetentionPlan plan;
  int64_t protect_since_ms = started_ms;
  std::set<std::string> referenced;  // every blob a build names
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return absl::UnavailableError("controller is shutting down");
    // Until its removals are done Submit looks at its inputs again (a dry run removes nothing).
    if (apply) ++retention_passes_;
    std::vector<BlobRecord> records;
    std::vector<BlobRecord> inputs;
    std::set<std::string> in_use;
    for (const auto& [id, job] : jobs_) {
      const v1::Build& b = job.build;
      const bool finished = IsTerminal(b.state());
      const int64_t finished_ms = finished ? b.finished_unix_ms() : 0;
      for (const BuildInput& input : BuildInputs(b.spec())) {
        referenced.insert(input.digest);
        // Whatever an unfinished build uses stays.
        if (!finished) in_use.insert(input.digest);
        if (b.removed_inputs().contains(input.digest)) continue;
        auto size = stored_sizes.find(input.digest);
        if (size == stored_sizes.end()) continue;
        BlobRecord& r = inputs.emplace_back();
        r.build_id = id;
        r.kind = input.kind;
        r.info.set_name(input.name);
        r.info.set_sha256(input.digest);
        r.info.set_size(size->second);
        r.finished_unix_ms = finished_ms;
      }
      for (const v1::ArtifactInfo& a : b.uploading_artifacts()) referenced.insert(a.sha256());
      // A blob touched since an unfinished build was submitted stays: it may be one of its artifacts,
      // found already stored and not uploaded again.
      if (!finished) protect_since_ms = std::min(protect_since_ms, b.created_unix_ms());
      for (int i = 0; i < b.artifacts_size(); ++i) {
        if (b.artifacts(i).expired_unix_ms() != 0) continue;
        referenced.insert(b.artifacts(i).sha256());
        records.push_back(BlobRecord{id, i, "artifact", b.artifacts(i), finished_ms});
      }
    }
    plan = PlanBlobRetention(records, inputs, in_use, options_.retention, started_ms);
  }

  v1::CollectGarbageResponse response;
  response.set_applied(apply);
  response.set_retention_days(options_.retention.max_age_days);
  response.set_max_total_bytes(options_.retention.max_total_bytes);
  response.set_partial_upload_max_age_hours(options_.retention.partial_upload_max_age_hours);
  response.set_input_retention_days(options_.retention.input_max_age_days);
  response.set_kept_bytes(plan.kept_bytes);
  CollectStaleBlobs(stored, referenced, started_ms, protect_since_ms, apply, &response);
  if (!apply) {
    response.set_removed_bytes(plan.removed_bytes);
    for (v1::GarbageItem& item : plan.items) *response.add_items() = std::move(item);
    return response;
  }

  std::set<std::string> removed;
  for (const std::string& digest : plan.digests) {
    absl::StatusOr<bool> r = blobs_.Remove(digest, protect_since_ms);
    if (!r.ok()) {
      spdlog::error("retention: {}", r.status().ToString());
    } else if (*r) {
      removed.insert(digest);
    }
  }
  const int64_t now_ms = UnixMillis();
  std::set<std::string> counted;  // shared blobs count once
  {
    std::lock_guard<std::mutex> lock(mu_);
    --retention_passes_;  // its removals are done
    for (v1::GarbageItem& item : plan.items) {
      if (removed.count(item.sha256()) == 0) continue;
      Job* job = FindLocked(item.build_id());
      if (job == nullptr) continue;
      if (item.kind() != "artifact") {
        job->build.mutable_removed_inputs()->insert({item.sha256(), now_ms});
        SaveJobLocked(*job);
      } else {
        bool changed = false;
        for (v1::ArtifactInfo& a : *job->build.mutable_artifacts()) {
          if (a.sha256() == item.sha256() && a.expired_unix_ms() == 0) {
            a.set_expired_unix_ms(now_ms);
            changed = true;
          }
        }
        if (changed) {
          SaveJobLocked(*job);
          store_->PutArtifacts(job->build.id(), job->build.attempt(), job->build.artifacts());
        }
      }
      if (counted.insert(item.sha256()).second) response.set_removed_bytes(response.removed_bytes() + item.size());
      *response.add_items() = std::move(item);
    }
  }
  FlushNotifications();
  if (response.items_size() > 0) {
    const auto artifacts = std::count_if(response.items().begin(), response.items().end(),
                                         [](const v1::GarbageItem& item) { return item.kind() == "artifact"; });
    spdlog::info("retention removed {} artifact(s) and {} build input(s), {} bytes; {} artifact bytes kept",
                 artifacts, response.items_size() - artifacts, response.removed_bytes(), response.kept_bytes());
  }
  return response;
}

void Controller::CollectStaleBlobs(const absl::StatusOr<std::vector<BlobStore::FileInfo>>& stored,
                                   const std::set<std::string>& referenced, int64_t now_ms, int64_t protect_since_ms,
                                   bool apply, v1::CollectGarbageResponse* response) {
  const RetentionPolicy& policy = options_.retention;
  if (policy.partial_upload_max_age_hours == 0) return;
  auto candidates = [](const absl::StatusOr<std::vector<BlobStore::FileInfo>>& files) {
    std::vector<v1::StaleBlob> out;
    if (!files.ok()) {
      spdlog::error("retention: {}", files.status().ToString());
      return out;
    }
    for (const BlobStore::FileInfo& f : *files) {
      v1::StaleBlob& b = out.emplace_back();
      b.set_key(f.key);
      b.set_size(f.size);
      b.set_last_used_unix_ms(f.last_used_ms);
    }
    return out;
  };
  // A partial is aged by its last write alone: an upload in progress holds its claim (never listed),
  // and a sender that returns after the limit starts over. A stored blob a running build may have
  // found (touched since the oldest was submitted) stays, as for artifacts.
  std::vector<v1::StaleBlob> partials = PlanStale(candidates(blobs_.ListPartials()), {}, policy, now_ms);
  std::vector<v1::StaleBlob> unreferenced =
      PlanStale(candidates(stored), referenced, policy, now_ms, protect_since_ms);
  const int64_t cutoff_ms = StaleCutoffMs(policy, now_ms);
  auto keep_removed = [&](std::vector<v1::StaleBlob>* files, auto remove) {
    std::erase_if(*files, [&](const v1::StaleBlob& b) {
      absl::StatusOr<bool> r = remove(b.key());
      if (!r.ok()) spdlog::error("retention: {}", r.status().ToString());
      return !r.ok() || !*r;
    });
  };
  if (apply) {
    keep_removed(&partials, [&](const std::string& key) { return blobs_.RemovePartial(key, cutoff_ms); });
    keep_removed(&unreferenced, [&](const std::string& digest) {
      return blobs_.Remove(digest, std::min(cutoff_ms, protect_since_ms));
    });
    if (!partials.empty() || !unreferenced.empty()) {
      spdlog::info("retention removed {} partial upload(s) and {} unreferenced blob(s) idle for over {} h",
                   partials.size(), unreferenced.size(), policy.partial_upload_max_age_hours);
    }
  }
  for (v1::StaleBlob& b : partials) *response->add_partial_uploads() = std::move(b);
  for (v1::StaleBlob& b : unreferenced) *response->add_unreferenced_blobs() = std::move(b);
}

}  // namespace freeagent::controller
