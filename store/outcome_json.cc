#include "store/outcome_json.h"

#include <nlohmann/json.hpp>

#include "common/text.h"

namespace kiln::store {

using json = nlohmann::json;

namespace {

int64_t Ms(Instant t) { return std::chrono::duration_cast<Duration>(t.time_since_epoch()).count(); }

}  // namespace

std::string OutcomeJson(const scheduler::AttemptOutcome& o) {
  json j = {{"started", o.started},
            {"lost", o.lost},
            {"timed_out", o.timed_out},
            {"killed", o.killed},
            {"started_at_ms", Ms(o.started_at)},
            {"ended_at_ms", Ms(o.ended_at)},
            {"cpu_ms", o.cpu.count()},
            {"max_rss_kb", o.max_rss_kb},
            {"log_bytes", o.log_bytes},
            {"log_truncated", o.log_truncated}};
  if (!o.error.empty()) j["error"] = SafeUtf8(o.error);
  if (!o.stop_cause.empty()) j["stop_cause"] = SafeUtf8(o.stop_cause);
  if (o.exit_code) j["exit_code"] = *o.exit_code;
  if (o.signal) j["signal"] = *o.signal;
  return j.dump();
}

std::optional<scheduler::AttemptOutcome> ParseOutcomeJson(const std::string& text) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  try {
    scheduler::AttemptOutcome o;
    o.started = j.value("started", false);
    o.lost = j.value("lost", false);
    o.timed_out = j.value("timed_out", false);
    o.killed = j.value("killed", false);
    o.started_at = Instant(Duration(j.value("started_at_ms", int64_t{0})));
    o.ended_at = Instant(Duration(j.value("ended_at_ms", int64_t{0})));
    o.cpu = Duration(j.value("cpu_ms", int64_t{0}));
    o.max_rss_kb = j.value("max_rss_kb", int64_t{0});
    o.log_bytes = j.value("log_bytes", uint64_t{0});
    o.log_truncated = j.value("log_truncated", false);
    o.error = j.value("error", std::string());
    o.stop_cause = j.value("stop_cause", std::string());
    if (j.contains("exit_code")) o.exit_code = j["exit_code"].get<int>();
    if (j.contains("signal")) o.signal = j["signal"].get<int>();
    return o;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

}  // namespace kiln::store
