#include "executor/wire.h"

#include <cstring>

namespace kiln::executor::wire {

using scheduler::AttemptKey;
using scheduler::AttemptOutcome;

Writer& Writer::U8(uint8_t v) {
  body_.push_back(static_cast<char>(v));
  return *this;
}

Writer& Writer::U32(uint32_t v) {
  for (int i = 0; i < 4; ++i) body_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return *this;
}

Writer& Writer::I64(int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) body_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
  return *this;
}

Writer& Writer::Str(std::string_view v) {
  U32(static_cast<uint32_t>(v.size()));
  body_.append(v);
  return *this;
}

Writer& Writer::Key(const AttemptKey& key) {
  return I64(Value(key.run)).Str(key.task_id).I64(key.attempt);
}

Writer& Writer::Outcome(const AttemptOutcome& o) {
  U8(o.started).U8(o.lost).U8(o.timed_out).U8(o.killed).U8(o.log_truncated);
  Str(o.error).Str(o.stop_cause);
  U8(o.exit_code.has_value()).I64(o.exit_code.value_or(0));
  U8(o.signal.has_value()).I64(o.signal.value_or(0));
  I64(o.started_at.time_since_epoch().count()).I64(o.ended_at.time_since_epoch().count());
  I64(o.cpu.count()).I64(o.max_rss_kb).I64(static_cast<int64_t>(o.log_bytes));
  U8(o.collect_failed).Str(o.results);
  return *this;
}

std::string Writer::Frame() const {
  std::string frame;
  frame.reserve(body_.size() + 4);
  const auto n = static_cast<uint32_t>(body_.size());
  for (int i = 0; i < 4; ++i) frame.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  frame += body_;
  return frame;
}

bool Reader::Take(size_t n, const char** out) {
  if (!ok_ || body_.size() < n) {
    ok_ = false;
    return false;
  }
  *out = body_.data();
  body_.remove_prefix(n);
  return true;
}

uint8_t Reader::U8() {
  const char* p;
  return Take(1, &p) ? static_cast<uint8_t>(p[0]) : 0;
}

uint32_t Reader::U32() {
  const char* p;
  if (!Take(4, &p)) return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

int64_t Reader::I64() {
  const char* p;
  if (!Take(8, &p)) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return static_cast<int64_t>(v);
}

std::string Reader::Str() {
  const uint32_t n = U32();
  const char* p;
  if (!Take(n, &p)) return {};
  return std::string(p, n);
}

AttemptKey Reader::Key() {
  AttemptKey key;
  key.run = RunId(I64());
  key.task_id = Str();
  key.attempt = static_cast<int>(I64());
  return key;
}

AttemptOutcome Reader::Outcome() {
  AttemptOutcome o;
  o.started = U8() != 0;
  o.lost = U8() != 0;
  o.timed_out = U8() != 0;
  o.killed = U8() != 0;
  o.log_truncated = U8() != 0;
  o.error = Str();
  o.stop_cause = Str();
  const bool has_exit = U8() != 0;
  const int64_t exit_code = I64();
  if (has_exit) o.exit_code = static_cast<int>(exit_code);
  const bool has_signal = U8() != 0;
  const int64_t signal = I64();
  if (has_signal) o.signal = static_cast<int>(signal);
  o.started_at = Instant(Duration(I64()));
  o.ended_at = Instant(Duration(I64()));
  o.cpu = Duration(I64());
  o.max_rss_kb = I64();
  o.log_bytes = static_cast<uint64_t>(I64());
  // Protocol 3's fields; an end a protocol 2 supervisor recorded on disk ends here.
  if (!body_.empty()) {
    o.collect_failed = U8() != 0;
    o.results = Str();
  }
  return o;
}

std::string EncodeHello(const std::string& daemon) {
  return Writer(Type::kHello).U32(kProtocol).Str(daemon).Frame();
}

std::string EncodeLaunch(const Launch& l) {
  Writer w(Type::kStart);
  w.Key(l.key).U32(static_cast<uint32_t>(l.argv.size()));
  for (const auto& a : l.argv) w.Str(a);
  w.U32(static_cast<uint32_t>(l.env.size()));
  for (const auto& [k, v] : l.env) w.Str(k).Str(v);
  w.Str(l.cwd).Str(l.log_path).U32(static_cast<uint32_t>(l.create_dirs.size()));
  for (const auto& d : l.create_dirs) w.Str(d);
  w.I64(l.timeout_ms).I64(l.kill_grace_ms).I64(static_cast<int64_t>(l.log_cap_bytes));
  w.U32(l.user.switch_user ? 1 : 0).Str(l.user.name).U32(l.user.uid).U32(l.user.gid);
  w.U32(static_cast<uint32_t>(l.user.groups.size()));
  for (gid_t g : l.user.groups) w.U32(g);
  w.U32(static_cast<uint32_t>(l.collect_argv.size()));
  for (const auto& a : l.collect_argv) w.Str(a);
  w.U32(static_cast<uint32_t>(l.mask.size()));
  for (const auto& m : l.mask) w.Str(m);
  w.U8(l.confirmed ? 1 : 0);
  w.U32(static_cast<uint32_t>(l.collect_also_on.size()));
  for (int code : l.collect_also_on) w.U32(static_cast<uint32_t>(code));
  return w.Frame();
}

std::string EncodeKey(Type type, const AttemptKey& key) { return Writer(type).Key(key).Frame(); }

std::string EncodeKeys(Type type, const std::vector<AttemptKey>& keys) {
  Writer w(type);
  w.U32(static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) w.Key(k);
  return w.Frame();
}

std::string EncodeWelcome(const Welcome& welcome) {
  Writer w(Type::kWelcome);
  w.Str(welcome.supervisor).U32(static_cast<uint32_t>(welcome.running.size()));
  for (const auto& k : welcome.running) w.Key(k);
  w.U32(static_cast<uint32_t>(welcome.ended.size()));
  for (const auto& e : welcome.ended) w.Key(e.key).Outcome(e.outcome);
  return w.Frame();
}

std::string EncodeEnded(const Ended& ended) {
  return Writer(Type::kEnded).Key(ended.key).Outcome(ended.outcome).Frame();
}

std::string EncodeRefused(const std::string& why) {
  return Writer(Type::kRefused).Str(why).Frame();
}

std::optional<std::pair<uint32_t, std::string>> DecodeHello(Reader& r) {
  const uint32_t protocol = r.U32();
  std::string daemon = r.Str();
  if (!r.done()) return std::nullopt;
  return std::pair(protocol, std::move(daemon));
}

std::optional<Launch> DecodeLaunch(Reader& r) {
  Launch l;
  l.key = r.Key();
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) l.argv.push_back(r.Str());
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) {
    std::string k = r.Str();
    std::string v = r.Str();
    l.env.emplace_back(std::move(k), std::move(v));
  }
  l.cwd = r.Str();
  l.log_path = r.Str();
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) l.create_dirs.push_back(r.Str());
  l.timeout_ms = r.I64();
  l.kill_grace_ms = r.I64();
  l.log_cap_bytes = static_cast<uint64_t>(r.I64());
  l.user.switch_user = r.U32() == 1;
  l.user.name = r.Str();
  l.user.uid = r.U32();
  l.user.gid = r.U32();
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) l.user.groups.push_back(r.U32());
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) l.collect_argv.push_back(r.Str());
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) l.mask.push_back(r.Str());
  // Absent in launches encoded before protocol 5 and 6 (a worker's launch stored in the
  // database).
  const uint8_t confirmed = r.done() ? 1 : r.U8();
  if (confirmed > 1) return std::nullopt;
  l.confirmed = confirmed == 1;
  for (uint32_t n = r.done() ? 0 : r.U32(), i = 0; r.ok() && i < n && i < 256; ++i) {
    const uint32_t code = r.U32();
    if (code > 255) return std::nullopt;
    l.collect_also_on.push_back(static_cast<int>(code));
  }
  if (!r.done()) return std::nullopt;
  return l;
}

std::optional<AttemptKey> DecodeKey(Reader& r) {
  AttemptKey key = r.Key();
  if (!r.done()) return std::nullopt;
  return key;
}

std::optional<std::vector<AttemptKey>> DecodeKeys(Reader& r) {
  std::vector<AttemptKey> keys;
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) keys.push_back(r.Key());
  if (!r.done()) return std::nullopt;
  return keys;
}

std::optional<Welcome> DecodeWelcome(Reader& r) {
  Welcome w;
  w.supervisor = r.Str();
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) w.running.push_back(r.Key());
  for (uint32_t n = r.U32(), i = 0; r.ok() && i < n; ++i) {
    Ended e;
    e.key = r.Key();
    e.outcome = r.Outcome();
    w.ended.push_back(std::move(e));
  }
  if (!r.done()) return std::nullopt;
  return w;
}

std::optional<Ended> DecodeEnded(Reader& r) {
  Ended e;
  e.key = r.Key();
  e.outcome = r.Outcome();
  if (!r.done()) return std::nullopt;
  return e;
}

std::vector<std::string> TakeFrames(std::string& buffer, bool* error, size_t limit) {
  std::vector<std::string> frames;
  size_t at = 0;
  *error = false;
  while (frames.size() < limit && buffer.size() - at >= 4) {
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) {
      n |= uint32_t{static_cast<uint8_t>(buffer[at + static_cast<size_t>(i)])} << (8 * i);
    }
    if (n == 0 || n > kMaxFrame) {
      *error = true;
      break;
    }
    if (buffer.size() - at - 4 < n) break;
    frames.emplace_back(buffer, at + 4, n);
    at += 4 + n;
  }
  buffer.erase(0, at);
  return frames;
}

}  // namespace kiln::executor::wire
