// Schedules fired by a real daemon: no gaps or duplicates across a restart, catch-up after
// downtime under each policy (with the schedule clock moved forward and back through
// [scheduler] clock_offset), overlap policies, and two daemons on one database.
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/time.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

// Reads the daemon's stdout up to its "kiln: schedules:" line (every first check done).
std::string SchedulesLine(Daemon& daemon) {
  for (std::string line = daemon.ReadLine(); !line.empty(); line = daemon.ReadLine()) {
    if (line.rfind("kiln: schedules:", 0) == 0) return line;
  }
  FAIL("the daemon ended without its schedules line");
  return "";
}

int64_t Count(const std::string& sql) { return std::stoll(Sql(sql)); }

// Scheduled runs of `name` as "logical date<-interval start", oldest first.
std::string ScheduledRuns(const std::string& name) {
  return Sql(
      "select coalesce(string_agg(to_char(logical_date at time zone 'UTC', "
      "'HH24:MI:SS') || '<-' || to_char(data_interval_start at time zone 'UTC', 'HH24:MI:SS'), "
      "' ' order by logical_date), '') from runs where trigger = 'schedule' and pipeline = '" +
      name + "'");
}

// Waits (through the event stream) until `name` has `n` scheduled runs ended.
void WaitForEnded(const Daemon& daemon, const std::string& name, int n, int64_t after = 0) {
  int ended = 0;
  ReadEvents(
      daemon, "pipeline=" + name,
      [&](const json& e) {
        if (e["kind"] == "run_state" &&
            (e["to"] == "success" || e["to"] == "cancelled" || e["to"] == "failed")) {
          ++ended;
        }
        return ended >= n;
      },
      after);
}

std::string Hms(kiln::Instant t) { return kiln::FormatRfc3339(t).substr(11, 8); }

}  // namespace

TEST_CASE("an every-second schedule fires with no gap and no duplicate across a restart") {
  TempDir dir;
  const std::string name = Unique("tick");
  WriteFile(dir / "pipelines/tick.toml",
            Pipeline(name,
                     "schedule = \"every 1s\"\ncatchup = \"all\"\nmax_active_runs = 3\n"
                     "overlap = \"queue\""));
  {
    Daemon daemon(dir, dir / "pipelines");
    CHECK(SchedulesLine(daemon) ==
          "kiln: schedules: 1 pipelines checked; 0 runs created, 0 fires skipped");
    WaitForEnded(daemon, name, 3);
    CHECK(daemon.Stop() == 0);
  }
  const int64_t before = Count("select count(*) from runs where pipeline = '" + name + "'");
  {
    // Restarted: the fires missed while it was down are caught up (catchup = "all").
    Daemon daemon(dir, dir / "pipelines");
    SchedulesLine(daemon);
    WaitForEnded(daemon, name, static_cast<int>(before) + 3);
    CHECK(daemon.Stop() == 0);
  }
  // One run per second from the first to the last, each with the second before as its interval.
  const std::string runs =
      Sql("select count(*), count(distinct logical_date), "
          "extract(epoch from max(logical_date) - min(logical_date))::int, "
          "count(*) filter (where data_interval_start <> logical_date - "
          "interval '1 second') from runs where pipeline = '" +
          name + "'");
  const int64_t n = Count("select count(*) from runs where pipeline = '" + name + "'");
  CHECK(runs == std::to_string(n) + "|" + std::to_string(n) + "|" + std::to_string(n - 1) + "|0");
  CHECK(n >= before + 3);
}

TEST_CASE(
    "after downtime each catchup policy runs what it promises, and a clock step back "
    "repeats nothing") {
  TempDir dir;
  const std::string none = Unique("cu-none"), latest = Unique("cu-latest"), all = Unique("cu-all");
  const std::string hourly = "schedule = \"0 * * * *\"\nmax_active_runs = 5\n";
  WriteFile(dir / "pipelines/none.toml", Pipeline(none, hourly + "catchup = \"none\""));
  WriteFile(dir / "pipelines/latest.toml", Pipeline(latest, hourly + "catchup = \"latest\""));
  WriteFile(dir / "pipelines/all.toml", Pipeline(all, hourly + "catchup = \"all\""));
  auto cursor = [](const std::string& name) {
    auto t =
        kiln::ParseRfc3339(Sql("select to_char(fire_cursor at time zone 'UTC', "
                               "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') from pipelines where "
                               "name = '" +
                               name + "'"));
    REQUIRE(t.ok());
    return *t;
  };
  // Each phase starts 5 s into an hour of the schedule clock: none straddles a fire.
  const int64_t base = AlignedOffset(std::chrono::hours(1), std::chrono::seconds(5));
  auto start = [&](int64_t offset) {
    DaemonOptions o(dir / "pipelines");
    o.extra_config =
        "[scheduler]\ncatchup_cap = 2\nclock_offset = \"" + OffsetText(offset) + "\"\n";
    return std::make_unique<Daemon>(dir, o);
  };
  {
    auto daemon = start(base);
    // First sight: the cursors start at now; nothing is due.
    CHECK(SchedulesLine(*daemon) ==
          "kiln: schedules: 3 pipelines checked; 0 runs created, 0 fires skipped");
  }
  const kiln::Instant first = cursor(none);
  // The hours after the first cursor, up to three hours later (what a 3h downtime missed).
  std::vector<kiln::Instant> hours;
  const auto hour = std::chrono::hours(1);
  kiln::Instant h = std::chrono::floor<std::chrono::hours>(first) + hour;
  {
    auto daemon = start(base + 3 * 3600);
    std::string line = SchedulesLine(*daemon);
    for (; h <= cursor(none); h += hour) hours.push_back(h);
    // The 3 missed hours (both phases start 5 s into an hour).
    REQUIRE(hours.size() == 3);
    const size_t n = hours.size();
    // none: all skipped; latest: the last runs; all (capped at 2): the last two run.
    CHECK(line == "kiln: schedules: 3 pipelines checked; 3 runs created, " +
                      std::to_string(n + (n - 1) + (n - 2)) + " fires skipped");
    CHECK(ScheduledRuns(none) == "");
    CHECK(ScheduledRuns(latest) == Hms(hours[n - 1]) + "<-" + Hms(hours[n - 2]));
    CHECK(ScheduledRuns(all) == Hms(hours[n - 2]) + "<-" + Hms(hours[n - 3]) + " " +
                                    Hms(hours[n - 1]) + "<-" + Hms(hours[n - 2]));
    CHECK(Sql("select fires_skipped from pipelines where name in ('" + none + "', '" + latest +
              "', '" + all + "') order by name") ==
          std::to_string(n - 2) + "\n" + std::to_string(n - 1) + "\n" + std::to_string(n));
    // The API shows the count and the cursor.
    json p = Body(daemon->Client(kViewerToken).Get(("/api/v1/pipelines/" + none).c_str()));
    CHECK(p["fires_skipped"] == n);
    CHECK(p["last_fire"] == kiln::FormatRfc3339Millis(hours[n - 1]));
    CHECK(p["next_fire"] == kiln::FormatRfc3339Millis(hours[n - 1] + hour));
    CHECK(p["next_fires"] == json::array({kiln::FormatRfc3339Millis(hours[n - 1] + hour),
                                          kiln::FormatRfc3339Millis(hours[n - 1] + 2 * hour),
                                          kiln::FormatRfc3339Millis(hours[n - 1] + 3 * hour)}));
    CHECK(p["catchup"] == "none");
  }
  const std::string runs_before = ScheduledRuns(latest) + "|" + ScheduledRuns(all);
  {
    // The clock stepped back an hour: the fires it reads again are not repeated.
    auto daemon = start(base + 2 * 3600);
    CHECK(SchedulesLine(*daemon) ==
          "kiln: schedules: 3 pipelines checked; 0 runs created, 0 fires skipped");
    CHECK(ScheduledRuns(latest) + "|" + ScheduledRuns(all) == runs_before);
  }
  {
    // Forward again past one more hour: exactly that one is new.
    auto daemon = start(base + 4 * 3600);
    SchedulesLine(*daemon);
    const std::string next = Hms(hours.back() + hour) + "<-" + Hms(hours.back());
    CHECK(ScheduledRuns(latest) ==
          Hms(hours.back()) + "<-" + Hms(hours[hours.size() - 2]) + " " + next);
    CHECK(ScheduledRuns(all).substr(ScheduledRuns(all).size() - next.size()) == next);
    CHECK(Count("select count(*) from runs where pipeline = '" + all + "'") == 3);
  }
}

TEST_CASE("two daemons on one database fire each instant exactly once") {
  TempDir a, b;
  const std::string name = Unique("twin");
  WriteFile(a / "pipelines/twin.toml",
            Pipeline(name, "schedule = \"every 1s\"\nmax_active_runs = 10\noverlap = \"queue\""));
  Daemon first(a, a / "pipelines");
  Daemon second(b, a / "pipelines");
  SchedulesLine(first);
  SchedulesLine(second);
  WaitForEnded(first, name, 6);
  CHECK(first.Stop() == 0);
  CHECK(second.Stop() == 0);
  const int64_t n = Count("select count(*) from runs where pipeline = '" + name + "'");
  CHECK(n >= 6);
  CHECK(Sql("select count(distinct logical_date), extract(epoch from max(logical_date) - "
            "min(logical_date))::int from runs where pipeline = '" +
            name + "'") == std::to_string(n) + "|" + std::to_string(n - 1));
  // Each run was carried out by the daemon that created it: no start was fenced off.
  CHECK(Count("select count(*) from events where kind = 'fenced' and pipeline = '" + name + "'") ==
        0);
}

namespace {

// No two runs of `name` were running at the same time: each started after the one before ended.
int64_t OverlappingRuns(const std::string& name) {
  return Count(
      "select count(*) from runs a join runs b on a.pipeline = b.pipeline and a.id < b.id "
      "where a.pipeline = '" +
      name +
      "' and a.started_at is not null and b.started_at is not null "
      "and b.started_at < coalesce(a.ended_at, now())");
}

std::string Blocking(const TempDir& dir) {
  return "while [ ! -e " + (dir / "release").string() + " ]; do sleep 0.02; done";
}

}  // namespace

TEST_CASE("overlap skip: fires while a run is active are recorded as skipped") {
  TempDir dir;
  const std::string name = Unique("ov-skip");
  WriteFile(dir / "pipelines/p.toml",
            Pipeline(name, "schedule = \"every 1s\"\noverlap = \"skip\"", Blocking(dir)));
  Daemon daemon(dir, dir / "pipelines");
  SchedulesLine(daemon);
  int skipped = 0;
  auto events = ReadEvents(daemon, "pipeline=" + name, [&](const json& e) {
    return e["kind"] == "fire_skipped" && ++skipped == 2;
  });
  CHECK(events.front()["kind"] == "run_created");
  CHECK(events.back()["detail"]["reason"] == "overlap");
  CHECK(events.back()["detail"]["max_active_runs"] == 1);
  CHECK(events.back()["detail"]["active_runs"] == 1);
  CHECK(events.back()["actor"] == "schedule");
  WriteFile(dir / "release", "");
  const int64_t first = events.front()["run"];
  CHECK(WaitForRunEnd(daemon, first) == "success");
  CHECK(daemon.Stop() == 0);
  // Every skipped fire came while the first run was active, and none of them has a run.
  CHECK(Count("select count(*) from events e join runs r on r.id = " + std::to_string(first) +
              " where e.kind = 'fire_skipped' and e.pipeline = '" + name +
              "' and (e.detail->>'logical_date')::timestamptz > r.logical_date and "
              "(e.detail->>'logical_date')::timestamptz <= r.ended_at") >= 2);
  CHECK(Count("select count(*) from runs r join events e on e.pipeline = r.pipeline and "
              "e.kind = 'fire_skipped' and (e.detail->>'logical_date')::timestamptz = "
              "r.logical_date where r.pipeline = '" +
              name + "'") == 0);
  CHECK(Sql("select fires_skipped >= 2 from pipelines where name = '" + name + "'") == "t");
  CHECK(OverlappingRuns(name) == 0);
}

TEST_CASE("overlap queue: fires while a run is active wait, then run one at a time") {
  TempDir dir;
  const std::string name = Unique("ov-queue");
  WriteFile(dir / "pipelines/p.toml",
            Pipeline(name, "schedule = \"every 1s\"\noverlap = \"queue\"", Blocking(dir)));
  Daemon daemon(dir, dir / "pipelines");
  SchedulesLine(daemon);
  int created = 0;
  auto events = ReadEvents(daemon, "pipeline=" + name, [&](const json& e) {
    return e["kind"] == "run_created" && ++created == 3;
  });
  const int64_t first = events.front()["run"];
  // The later runs wait, queued, while the first one runs.
  CHECK(Sql("select string_agg(state, ',' order by id) from runs where pipeline = '" + name +
            "' and id <= " + std::to_string(static_cast<int64_t>(events.back()["run"]))) ==
        "running,queued,queued");
  CHECK(first > 0);
  WriteFile(dir / "release", "");
  WaitForEnded(daemon, name, 3);
  CHECK(daemon.Stop() == 0);
  CHECK(Sql("select string_agg(state, ',' order by id) from (select state, id from runs where "
            "pipeline = '" +
            name + "' order by id limit 3) r") == "success,success,success");
  CHECK(OverlappingRuns(name) == 0);
  CHECK(Sql("select fires_skipped from pipelines where name = '" + name + "'") == "0");
}

TEST_CASE("overlap cancel_running: a fire cancels the running run, then its run starts") {
  TempDir dir;
  const std::string name = Unique("ov-cancel");
  WriteFile(dir / "pipelines/p.toml",
            Pipeline(name, "schedule = \"every 1s\"\noverlap = \"cancel_running\"", "sleep 60"));
  DaemonOptions o(dir / "pipelines");
  o.extra_config = "[executor]\nkill_grace = \"1s\"\n";
  Daemon daemon(dir, o);
  SchedulesLine(daemon);
  int cancelled = 0;
  ReadEvents(daemon, "pipeline=" + name, [&](const json& e) {
    return e["kind"] == "run_state" && e["to"] == "cancelled" && ++cancelled == 2;
  });
  CHECK(daemon.Stop() == 0);
  CHECK(Sql("select detail->>'reason' from events where kind = 'cancel_requested' and pipeline "
            "= '" +
            name + "' order by id limit 1") == "cancelled by the schedule: a newer run of '" +
                                                   name +
                                                   "' replaces it (overlap = \"cancel_running\")");
  CHECK(Sql("select actor from events where kind = 'cancel_requested' and pipeline = '" + name +
            "' limit 1") == "schedule");
  CHECK(OverlappingRuns(name) == 0);
}

TEST_CASE("the heartbeat example fires every minute with no gap or duplicate across restarts") {
  TempDir dir;
  const std::string name = Unique("heartbeat");
  std::string text = ReadFile(SourceDir() / "examples/heartbeat/pipeline.toml");
  const std::string declared = "name = \"heartbeat\"";
  REQUIRE(text.find(declared) != std::string::npos);
  text.replace(text.find(declared), declared.size(), "name = \"" + name + "\"");
  WriteFile(dir / "pipelines/heartbeat.toml", text);
  // Each phase starts 5 s into a minute of the schedule clock: none straddles a fire (one just
  // before a daemon stops would be cancelled).
  const int64_t base = AlignedOffset(std::chrono::minutes(1), std::chrono::seconds(5));
  auto start = [&](int64_t offset) {
    DaemonOptions o(dir / "pipelines");
    o.extra_config = "[scheduler]\nclock_offset = \"" + OffsetText(offset) + "\"\n";
    return std::make_unique<Daemon>(dir, o);
  };
  {
    auto daemon = start(base);
    CHECK(SchedulesLine(*daemon) ==
          "kiln: schedules: 1 pipelines checked; 0 runs created, 0 fires skipped");
  }
  // Down for three minutes (as the schedule clock sees it), then for two more.
  for (const int64_t offset : {base + 180, base + 300}) {
    auto daemon = start(offset);
    SchedulesLine(*daemon);
    const int64_t n = Count("select count(*) from runs where pipeline = '" + name + "'");
    WaitForEnded(*daemon, name, static_cast<int>(n));
  }
  const int64_t n = Count("select count(*) from runs where pipeline = '" + name + "'");
  CHECK(n >= 5);
  CHECK(Sql("select count(distinct logical_date), extract(epoch from max(logical_date) - "
            "min(logical_date))::int / 60, count(*) filter (where data_interval_start <> "
            "logical_date - interval '1 minute' or extract(second from logical_date) <> 0), "
            "count(*) filter (where state <> 'success') from runs where pipeline = '" +
            name + "'") == std::to_string(n) + "|" + std::to_string(n - 1) + "|0|0");
}

TEST_CASE("the start's schedules line comes also with broken and paused pipelines") {
  TempDir dir;
  WriteFile(dir / "pipelines/broken.toml",
            "[pipeline]\nname = \"" + Unique("broken") + "\"\nschedule = \"61 * * * *\"\n");
  WriteFile(dir / "pipelines/paused.toml",
            Pipeline(Unique("paused"), "schedule = \"every 1s\"\npaused = true"));
  WriteFile(dir / "pipelines/plain.toml", Pipeline(Unique("plain"), ""));
  Daemon daemon(dir, dir / "pipelines");
  CHECK(SchedulesLine(daemon) ==
        "kiln: schedules: 3 pipelines checked; 0 runs created, 0 fires skipped");
}
