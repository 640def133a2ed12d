#include "controller/retention.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"

namespace freeagent::controller {

RetentionPlan PlanRetention(const std::vector<BlobRecord>& records, const std::set<std::string>& in_use,
                            const RetentionPolicy& policy, int64_t now_unix_ms) {
  struct Blob {
    uint64_t size = 0;
    int64_t newest_ms = 0;
    bool pinned = false;
    std::vector<const BlobRecord*> refs;
  };
  std::map<std::string, Blob> blobs;
  for (const BlobRecord& r : records) {
    Blob& b = blobs[r.info.sha256()];
    b.size = r.info.size();
    b.refs.push_back(&r);
    if (r.finished_unix_ms == 0) b.pinned = true;
    b.newest_ms = std::max(b.newest_ms, r.finished_unix_ms);
  }
  for (const std::string& d : in_use) {
    auto it = blobs.find(d);
    if (it != blobs.end()) it->second.pinned = true;
  }
  RetentionPlan plan;
  uint64_t total = 0;
  for (const auto& [digest, b] : blobs) total += b.size;

  std::vector<std::pair<int64_t, std::string>> by_age;  // (newest use, digest), oldest first
  for (const auto& [digest, b] : blobs) {
    if (!b.pinned) by_age.emplace_back(b.newest_ms, digest);
  }
  std::sort(by_age.begin(), by_age.end());
  const int64_t cutoff_ms =
      policy.max_age_days == 0 ? INT64_MIN : now_unix_ms - int64_t{policy.max_age_days} * 24 * 3600 * 1000;
  auto remove = [&](const std::string& digest, const std::string& reason) {
    const Blob& b = blobs[digest];
    plan.digests.push_back(digest);
    plan.removed_bytes += b.size;
    total -= b.size;
    for (const BlobRecord* r : b.refs) {
      v1::GarbageItem item;
      item.set_build_id(r->build_id);
      item.set_name(r->info.name());
      item.set_sha256(digest);
      item.set_size(r->info.size());
      item.set_finished_unix_ms(r->finished_unix_ms);
      item.set_reason(reason);
      item.set_kind(r->kind);
      plan.items.push_back(std::move(item));
    }
  };
  size_t next = 0;
  for (; next < by_age.size() && by_age[next].first < cutoff_ms; ++next) {
    remove(by_age[next].second, absl::StrCat("older than ", policy.max_age_days, " days"));
  }
  for (; policy.max_total_bytes > 0 && total > policy.max_total_bytes && next < by_age.size(); ++next) {
    remove(by_age[next].second, absl::StrCat("over the ", policy.max_total_bytes, "-byte total"));
  }
  std::stable_sort(plan.items.begin(), plan.items.end(), [](const v1::GarbageItem& a, const v1::GarbageItem& b) {
    return a.finished_unix_ms() < b.finished_unix_ms();
  });
  plan.kept_bytes = total;
  return plan;
}

RetentionPlan PlanInputRetention(const std::vector<BlobRecord>& inputs, const std::set<std::string>& in_use,
                                 const RetentionPolicy& policy, int64_t now_unix_ms) {
  if (policy.input_max_age_days == 0) return RetentionPlan{};
  RetentionPolicy by_age;
  by_age.max_age_days = policy.input_max_age_days;
  return PlanRetention(inputs, in_use, by_age, now_unix_ms);
}

RetentionPlan PlanBlobRetention(const std::vector<BlobRecord>& artifacts, const std::vector<BlobRecord>& inputs,
                                const std::set<std::string>& in_use, const RetentionPolicy& policy,
                                int64_t now_unix_ms) {
  const RetentionPlan inputs_alone = PlanInputRetention(inputs, in_use, policy, now_unix_ms);
  const std::set<std::string> old_inputs(inputs_alone.digests.begin(), inputs_alone.digests.end());
  std::set<std::string> artifacts_in_use = in_use;
  for (const BlobRecord& r : inputs) {
    if (old_inputs.count(r.info.sha256()) == 0) artifacts_in_use.insert(r.info.sha256());
  }
  RetentionPlan plan = PlanRetention(artifacts, artifacts_in_use, policy, now_unix_ms);
  const std::set<std::string> artifacts_removed(plan.digests.begin(), plan.digests.end());
  std::set<std::string> inputs_in_use = in_use;
  for (const BlobRecord& r : artifacts) {
    if (artifacts_removed.count(r.info.sha256()) == 0) inputs_in_use.insert(r.info.sha256());
  }
  RetentionPlan input_plan = PlanInputRetention(inputs, inputs_in_use, policy, now_unix_ms);
  for (const std::string& d : input_plan.digests) {
    if (artifacts_removed.count(d) == 0) plan.digests.push_back(d);
  }
  std::set<std::string> counted(artifacts_removed);  // a blob's bytes count once
  for (v1::GarbageItem& item : input_plan.items) {
    if (counted.insert(item.sha256()).second) plan.removed_bytes += item.size();
    plan.items.push_back(std::move(item));
  }
  std::stable_sort(plan.items.begin(), plan.items.end(), [](const v1::GarbageItem& a, const v1::GarbageItem& b) {
    return a.finished_unix_ms() < b.finished_unix_ms();
  });
  return plan;
}

std::vector<BuildInput> BuildInputs(const v1::JobSpec& spec) {
  std::vector<BuildInput> inputs = {{"spec.source_digest", "source", "source archive", spec.source_digest()}};
  const v1::SigningMaterial& s = spec.signing();
  if (!s.p12_digest().empty()) inputs.push_back({"spec.signing.p12_digest", "p12", "P12", s.p12_digest()});
  for (int i = 0; i < s.profile_digests_size(); ++i) {
    inputs.push_back({absl::StrCat("spec.signing.profile_digests[", i, "]"), "profile", "provisioning profile",
                      s.profile_digests(i)});
  }
  return inputs;
}

int64_t StaleCutoffMs(const RetentionPolicy& policy, int64_t now_unix_ms) {
  if (policy.partial_upload_max_age_hours == 0) return INT64_MIN;
  return now_unix_ms - int64_t{policy.partial_upload_max_age_hours} * 3600 * 1000;
}

std::vector<v1::StaleBlob> PlanStale(std::vector<v1::StaleBlob> candidates, const std::set<std::string>& keep,
                                     const RetentionPolicy& policy, int64_t now_unix_ms, int64_t protect_since_ms) {
  const int64_t cutoff_ms = std::min(StaleCutoffMs(policy, now_unix_ms), protect_since_ms);
  std::erase_if(candidates, [&](const v1::StaleBlob& b) {
    return b.last_used_unix_ms() >= cutoff_ms || keep.count(b.key()) > 0;
  });
  std::sort(candidates.begin(), candidates.end(), [](const v1::StaleBlob& a, const v1::StaleBlob& b) {
    if (a.last_used_unix_ms() != b.last_used_unix_ms()) return a.last_used_unix_ms() < b.last_used_unix_ms();
    return a.key() < b.key();
  });
  return candidates;
}

}  // namespace freeagent::controller
