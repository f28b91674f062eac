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
  if (o.collect_failed) j["collect_failed"] = true;
  if (!o.results.empty()) {
    json results = json::parse(o.results, nullptr, /*allow_exceptions=*/false);
    if (results.is_object()) j["results"] = std::move(results);
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
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
    o.collect_failed = j.value("collect_failed", false);
    if (auto it = j.find("results"); it != j.end() && it->is_object()) o.results = it->dump();
    return o;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

std::optional<std::string> ResultsJson(const scheduler::AttemptOutcome& o) {
  if (o.results.empty() || o.collect_failed) return std::nullopt;
  json in = json::parse(o.results, nullptr, /*allow_exceptions=*/false);
  if (!in.is_object()) return std::nullopt;
  json out = json::object();
  for (const char* list : {"inputs", "outputs"}) {
    json files = json::array();
    if (auto it = in.find(list); it != in.end() && it->is_array()) {
      for (const json& f : *it) {
        if (!f.is_object()) continue;
        auto path = f.find("path");
        auto sha = f.find("sha256");
        auto bytes = f.find("bytes");
        if (path == f.end() || !path->is_string() || sha == f.end() || !sha->is_string() ||
            bytes == f.end() || !bytes->is_number_unsigned()) {
          continue;
        }
        const std::string p = path->get<std::string>();
        const std::string h = sha->get<std::string>();
        if (p.empty() || p[0] != '/' || h.size() != 64 ||
            h.find_first_not_of("0123456789abcdef") != std::string::npos) {
          continue;
        }
        files.push_back({{"path", SafeUtf8(p)}, {"sha256", h}, {"bytes", bytes->get<uint64_t>()}});
      }
    }
    out[list] = std::move(files);
  }
  if (auto it = in.find("metrics"); it != in.end() && it->is_object()) {
    json metrics = json::object();
    for (const auto& [key, value] : it->items()) {
      if (value.is_number()) metrics[SafeUtf8(key)] = value;
    }
    out["metrics"] = std::move(metrics);
  }
  if (auto it = in.find("report"); it != in.end() && it->is_object()) out["report"] = *it;
  if (auto it = in.find("report_error"); it != in.end() && it->is_string()) {
    out["report_error"] = SafeUtf8(it->get<std::string>());
  }
  // A cached task: the earlier attempt whose outputs it reused ({"hit": {"run", "task",
  // "attempt"}}, numbers and a task id only), and why its outputs could not be kept.
  if (auto it = in.find("cache"); it != in.end() && it->is_object()) {
    const json hit = it->value("hit", json());
    if (hit.is_object() && hit.value("run", json()).is_number_integer() &&
        hit.value("attempt", json()).is_number_integer() && hit.value("task", json()).is_string()) {
      out["cache"] = {{"hit",
                       {{"run", hit["run"]},
                        {"task", SafeUtf8(hit["task"].get<std::string>())},
                        {"attempt", hit["attempt"]}}}};
    }
  }
  if (auto it = in.find("cache_error"); it != in.end() && it->is_string()) {
    out["cache_error"] = SafeUtf8(it->get<std::string>());
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace kiln::store
