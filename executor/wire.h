// The protocol between a daemon and its supervisor (executor/supervisor.h) over a Unix socket:
// frames of a 4-byte little-endian length and a body; a body is a one-byte message type and its
// fields in a fixed order. Byte strings are carried as they are (argv, env and paths need not be
// UTF-8). Both ends are the same kiln binary or a newer one: the hello names the protocol
// version and a supervisor refuses a version it does not speak.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "scheduler/task_runner.h"

namespace kiln::executor::wire {

// 2: Launch names the user. 3: Launch names the collector, an outcome carries its results.
// 4: Launch carries the secret values to mask in the log.
// 5: Launch says whether its start is recorded yet; Confirm.
// 6: Launch names the exit codes besides 0 after which the collector runs.
inline constexpr uint32_t kProtocol = 6;
// The refusal of a daemon while another's connection is open (a daemon retries it for a moment:
// the other may just have died, its end not read yet).
inline constexpr std::string_view kBusyRefusal = "another daemon is connected to this supervisor";
// A frame larger than this is a broken peer: the connection is closed.
inline constexpr uint32_t kMaxFrame = 64u << 20;

enum class Type : uint8_t {
  // daemon -> supervisor
  kHello = 1,    // protocol, daemon name
  kStart = 2,    // Launch
  kKill = 3,     // key
  kAck = 4,      // keys whose ends are committed
  kConfirm = 5,  // keys whose starts are committed (Launch::confirmed was false)
  // supervisor -> daemon
  kWelcome = 10,  // Welcome
  kEnded = 11,    // key, outcome
  kRefused = 12,  // why the connection is refused (another daemon is connected, a version)
};

struct Launch {
  scheduler::AttemptKey key;
  std::vector<std::string> argv;
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd;
  std::string log_path;
  std::vector<std::string> create_dirs;
  int64_t timeout_ms = 0;
  int64_t kill_grace_ms = 0;
  uint64_t log_cap_bytes = 0;
  Identity user;                          // switch_user false: the supervisor's own user
  std::vector<std::string> collect_argv;  // scheduler::LaunchRequest::collect_argv
  std::vector<int> collect_also_on;       // scheduler::LaunchRequest::collect_also_on
  std::vector<std::string> mask;          // scheduler::LaunchRequest::mask
  // False: sent while the commit that records the start is in flight. Until a Confirm names it,
  // the supervisor keeps it out of its lease renewals and never writes its end to the database;
  // if the daemon goes away first, it is stopped and forgotten (docs/design.md, "Launching while
  // the start commits").
  bool confirmed = true;
};

struct Ended {
  scheduler::AttemptKey key;
  scheduler::AttemptOutcome outcome;
};

struct Welcome {
  std::string supervisor;  // its lease name
  std::vector<scheduler::AttemptKey> running;
  std::vector<Ended> ended;  // ends it keeps that no daemon has acknowledged
};

// Appends fields to a body.
class Writer {
 public:
  explicit Writer(Type type) { U8(static_cast<uint8_t>(type)); }
  Writer& U8(uint8_t v);
  Writer& U32(uint32_t v);
  Writer& I64(int64_t v);
  Writer& Str(std::string_view v);
  Writer& Key(const scheduler::AttemptKey& key);
  Writer& Outcome(const scheduler::AttemptOutcome& o);
  // The frame: length, then the body.
  std::string Frame() const;

 private:
  std::string body_;
};

// Reads fields of a body in order; any read past the end or a malformed field makes ok() false
// (and returns zero values), so a broken peer cannot crash the reader.
class Reader {
 public:
  explicit Reader(std::string_view body) : body_(body) {}
  uint8_t U8();
  uint32_t U32();
  int64_t I64();
  std::string Str();
  scheduler::AttemptKey Key();
  scheduler::AttemptOutcome Outcome();
  bool ok() const { return ok_; }
  bool done() const { return ok_ && body_.empty(); }

 private:
  bool Take(size_t n, const char** out);
  std::string_view body_;
  bool ok_ = true;
};

std::string EncodeHello(const std::string& daemon);
std::string EncodeLaunch(const Launch& launch);
std::string EncodeKey(Type type, const scheduler::AttemptKey& key);
// kAck or kConfirm.
std::string EncodeKeys(Type type, const std::vector<scheduler::AttemptKey>& keys);
inline std::string EncodeAck(const std::vector<scheduler::AttemptKey>& keys) {
  return EncodeKeys(Type::kAck, keys);
}
std::string EncodeWelcome(const Welcome& welcome);
std::string EncodeEnded(const Ended& ended);
std::string EncodeRefused(const std::string& why);

// Decoders of a body whose type byte was read already; nullopt for a malformed body.
std::optional<std::pair<uint32_t, std::string>> DecodeHello(Reader& r);
std::optional<Launch> DecodeLaunch(Reader& r);
std::optional<scheduler::AttemptKey> DecodeKey(Reader& r);
// The body of kAck or kConfirm.
std::optional<std::vector<scheduler::AttemptKey>> DecodeKeys(Reader& r);
std::optional<Welcome> DecodeWelcome(Reader& r);
std::optional<Ended> DecodeEnded(Reader& r);

// Splits complete frames, `limit` at most, off the front of `buffer` (bytes read so far); the
// rest stays in it. Returns the bodies;
// `error` is set (and reading must stop) for a frame longer than kMaxFrame or an empty one.
std::vector<std::string> TakeFrames(std::string& buffer, bool* error, size_t limit = SIZE_MAX);

}  // namespace kiln::executor::wire
