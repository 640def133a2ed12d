// Controller::CollectGarbage: artifact retention over the live record (the rules are in retention.h).
#include <set>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "controller/controller.h"
#include "spdlog/spdlog.h"

namespace freeagent::controller {

absl::StatusOr<v1::CollectGarbageResponse> Controller::CollectGarbage(bool apply) {
  const int64_t started_ms = UnixMillis();
  RetentionPlan plan;
  int64_t protect_since_ms = started_ms;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return absl::UnavailableError("controller is shutting down");
    std::vector<ArtifactRecord> records;
    std::set<std::string> in_use;
    for (const auto& [id, job] : jobs_) {
      const v1::Build& b = job.build;
      const bool finished = IsTerminal(b.state());
      if (!finished) {
        // Whatever an unfinished build uses stays, and so does any blob touched since it was submitted:
        // it may be one of its artifacts, found already stored and not uploaded again.
        in_use.insert(b.spec().source_digest());
        in_use.insert(b.spec().signing().p12_digest());
        for (const std::string& d : b.spec().signing().profile_digests()) in_use.insert(d);
        protect_since_ms = std::min(protect_since_ms, b.created_unix_ms());
      }
      for (int i = 0; i < b.artifacts_size(); ++i) {
        if (b.artifacts(i).expired_unix_ms() != 0) continue;
        records.push_back(ArtifactRecord{id, i, b.artifacts(i), finished ? b.finished_unix_ms() : 0});
      }
    }
    plan = PlanRetention(records, in_use, options_.retention, started_ms);
  }

  v1::CollectGarbageResponse response;
  response.set_applied(apply);
  response.set_retention_days(options_.retention.max_age_days);
  response.set_max_total_bytes(options_.retention.max_total_bytes);
  response.set_kept_bytes(plan.kept_bytes);
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
    for (v1::GarbageItem& item : plan.items) {
      if (removed.count(item.sha256()) == 0) continue;
      Job* job = FindLocked(item.build_id());
      if (job == nullptr) continue;
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
      if (counted.insert(item.sha256()).second) response.set_removed_bytes(response.removed_bytes() + item.size());
      *response.add_items() = std::move(item);
    }
  }
  FlushNotifications();
  if (response.items_size() > 0) {
    spdlog::info("retention removed {} artifact(s), {} bytes; {} bytes kept", response.items_size(),
                 response.removed_bytes(), response.kept_bytes());
  }
  return response;
}

}  // namespace freeagent::controller
