#include "cli/follow.h"

#include <chrono>
#include <thread>

#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "cli/client.h"
#include "cli/format.h"
#include "proto/grpc_status.h"

namespace freeagent::cli {
namespace {

using freeagent::v1::Build;
using freeagent::v1::WatchEvent;

void WriteRaw(std::FILE* out, const char* data, size_t size) {
  std::fwrite(data, 1, size, out);
  std::fflush(out);
}

void WriteLine(std::FILE* out, const std::string& line) {
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
}

// Where the printed log stands: which attempt and how many of its bytes were written.
struct LogCursor {
  uint32_t attempt = 0;  // 0 = no log byte seen yet
  uint64_t offset = 0;
};

enum class StreamEnd { kFinished, kStopped, kRewatch };

}  // namespace

absl::StatusOr<Build> FollowBuild(freeagent::v1::BuildService::StubInterface* builds,
                                  const std::string& id, const FollowOptions& options) {
  LogCursor cursor;
  Build last;
  bool have_last = false;
  StatusLineTracker tracker;
  auto reconnect_until = std::chrono::steady_clock::time_point::max();

  auto reached_stop = [&] {
    return options.stop_at_log_size >= 0 &&
           (cursor.attempt == options.stop_attempt || cursor.attempt == 0) &&
           cursor.offset >= static_cast<uint64_t>(options.stop_at_log_size);
  };
  if (reached_stop()) {
    grpc::ClientContext context;
    SetUnaryDeadline(&context);
    freeagent::v1::GetBuildRequest request;
    request.set_id(id);
    grpc::Status status = builds->Get(&context, request, &last);
    if (!status.ok()) return freeagent::proto::FromGrpcStatus(status);
    return last;
  }

  for (;;) {
    grpc::ClientContext context;
    freeagent::v1::WatchRequest request;
    request.set_id(id);
    request.set_log_offset(cursor.offset);
    request.set_no_log(!options.log && !options.json);
    auto reader = builds->Watch(&context, request);
    StreamEnd end = StreamEnd::kFinished;
    WatchEvent event;
    while (reader->Read(&event)) {
      reconnect_until = std::chrono::steady_clock::time_point::max();
      if (event.has_status()) {
        last = event.status();
        have_last = true;
        if (options.json) {
          WriteLine(options.log_out, ToJson(event));
        } else if (options.status) {
          for (const std::string& line : tracker.Lines(last)) WriteLine(options.status_out, line);
        }
        continue;
      }
      if (!event.has_log()) continue;
      const freeagent::v1::LogData& log = event.log();
      if (cursor.attempt != 0 && log.attempt() != cursor.attempt) {
        // A new attempt restarts the log at 0; anything else means we must ask again from 0.
        if (log.offset() != 0) {
          cursor = LogCursor{};
          end = StreamEnd::kRewatch;
          break;
        }
        if (options.status && !options.json) {
          WriteLine(options.status_out, absl::StrCat("==> attempt ", log.attempt(), ": log restarts"));
        }
        cursor.offset = 0;
      }
      cursor.attempt = log.attempt();
      uint64_t begin = log.offset();
      uint64_t finish = begin + log.data().size();
      if (begin > cursor.offset) {
        // A gap: never print bytes out of order, ask again from where we are.
        end = StreamEnd::kRewatch;
        break;
      }
      if (finish > cursor.offset) {
        size_t skip = static_cast<size_t>(cursor.offset - begin);
        if (options.json) {
          WriteLine(options.log_out, ToJson(event));
        } else if (options.log) {
          WriteRaw(options.log_out, log.data().data() + skip, log.data().size() - skip);
        }
        cursor.offset = finish;
      }
      if (reached_stop()) {
        end = StreamEnd::kStopped;
        break;
      }
    }
    if (end != StreamEnd::kFinished) context.TryCancel();
    grpc::Status status = reader->Finish();
    if (end == StreamEnd::kStopped) return last;
    if (end == StreamEnd::kRewatch) continue;
    if (status.ok()) {
      if (have_last && IsTerminal(last.state())) return last;
      // The stream ended without a terminal status event: ask for the record.
      grpc::ClientContext get_context;
      SetUnaryDeadline(&get_context);
      freeagent::v1::GetBuildRequest get;
      get.set_id(id);
      Build build;
      grpc::Status get_status = builds->Get(&get_context, get, &build);
      if (!get_status.ok()) return freeagent::proto::FromGrpcStatus(get_status);
      if (IsTerminal(build.state())) {
        if (options.status && !options.json) {
          for (const std::string& line : tracker.Lines(build)) WriteLine(options.status_out, line);
        }
        return build;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;  // not over yet: keep watching
    }
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return freeagent::proto::FromGrpcStatus(status);
    }
    auto now = std::chrono::steady_clock::now();
    if (reconnect_until == std::chrono::steady_clock::time_point::max()) {
      reconnect_until = now + std::chrono::seconds(options.reconnect_seconds);
      if (options.status && !options.json) {
        WriteLine(options.status_out,
                  absl::StrCat("==> connection lost (", status.error_message(), "), reconnecting"));
      }
    } else if (now >= reconnect_until) {
      return freeagent::proto::FromGrpcStatus(status);
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace freeagent::cli
