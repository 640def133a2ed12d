// The outgoing side of the controller stream as job threads see it.
#pragma once

#include "freeagent/v1/worker.pb.h"

namespace freeagent::node {

class MessageSink {
 public:
  virtual ~MessageSink() = default;

  // Queues a bulk message (log chunk, progress). Blocks while the outgoing queue is full, which is how
  // a slow controller slows job output instead of growing memory. Returns false if there is no live
  // (welcomed) stream: the message was dropped and the caller relies on the resend after the next Hello.
  virtual bool Send(freeagent::v1::WorkerMessage message) = 0;

  // Queues a small control message (accepted, rejected, result, heartbeat) ahead of bulk traffic.
  // Never blocks; false (dropped) without a live stream.
  virtual bool SendPriority(freeagent::v1::WorkerMessage message) = 0;
};

}  // namespace freeagent::node
