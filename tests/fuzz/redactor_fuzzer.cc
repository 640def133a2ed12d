// The streaming redactor: input = secrets and a log, split by the first bytes. However the log is cut
// into writes, the output equals the non-streaming definition (every byte of every occurrence of
// every form masked, each masked run one marker), and the hold-back stays below the longest form.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "node/redactor.h"
#include "tests/node/redactor_reference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // Byte 0: number of secrets (0..3); byte 1: chunk size seed; then secrets separated by '\n'.
  const size_t nsecrets = static_cast<uint8_t>(in[0]) % 4;
  const size_t chunk_seed = static_cast<uint8_t>(in[1]);
  in.remove_prefix(2);
  std::vector<std::string> secrets;
  for (size_t i = 0; i < nsecrets; ++i) {
    const size_t nl = in.find('\n');
    if (nl == std::string_view::npos) return 0;
    secrets.emplace_back(in.substr(0, nl));
    in.remove_prefix(nl + 1);
  }
  freeagent::node::Redactor r(secrets);
  size_t longest = 0;
  for (const std::string& f : r.patterns()) longest = std::max(longest, f.size());
  std::string out;
  size_t pos = 0;
  size_t step = 0;
  while (pos < in.size()) {
    const size_t n = std::min(in.size() - pos, 1 + (chunk_seed * 31 + step++ * 17) % 23);
    out += r.Process(in.substr(pos, n));
    if (r.active() && r.held() >= longest) __builtin_trap();
    pos += n;
  }
  out += r.Flush();
  if (out != freeagent::node::testing::ReferenceRedaction(r.patterns(), in)) __builtin_trap();
  return 0;
}
