// Several daemons on one database with one leader (docs/design.md, "Several daemons"): the leader
// fires schedules and takes runs over; killed, another leads after its lease, and no fire is
// missed or made twice; stopped, another leads at once; pause and unpause through any daemon
// apply on all of them.
#include <catch2/catch.hpp>
#include <csignal>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/sha256.h"
#include "daemon.h"
#include "harness.h"

using nlohmann::json;
using namespace kiln::e2e;

namespace {

int64_t Count(const std::string& sql) { return std::stoll(Sql(sql)); }

// The daemon (of `daemons`) that holds a live leader lease, or -1.
int Leader(const std::vector<std::unique_ptr<Daemon>>& daemons) {
  const std::string holder =
      Sql("select coalesce(max(holder), '') from leader where expires_at > now()");
  for (size_t i = 0; i < daemons.size(); ++i) {
    const std::string suffix = ":" + daemons[i]->data_dir().string();
    if (holder.size() > suffix.size() &&
        holder.compare(holder.size() - suffix.size(), suffix.size(), suffix) == 0) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

// The value of a metric without labels in the daemon's /metrics.
int64_t Metric(const Daemon& daemon, const std::string& name) {
  auto res = daemon.Client(kViewerToken).Get("/metrics");
  REQUIRE(res);
  const std::string text = res->body;
  const auto at = text.find("\n" + name + " ");
  REQUIRE(at != std::string::npos);
  return std::stoll(text.substr(at + name.size() + 2));
}

DaemonOptions Options(const TempDir& shared, const std::string& lease) {
  DaemonOptions o(shared / "pipelines");
  o.lease = lease;
  return o;
}

}  // namespace

TEST_CASE("the leader killed twice during every-second fires: no fire missed or made twice") {
  TempDir shared, d0, d1, d2;
  const std::string name = Unique("lead");
  // catchup = "none": a fire the new leader found late would be skipped, not run, if it counted
  // as missed; every instant must still have its run.
  WriteFile(shared / "pipelines/lead.toml",
            Pipeline(name, "schedule = \"every 1s\"\ncatchup = \"none\"\nmax_active_runs = 50"));
  std::vector<std::unique_ptr<Daemon>> daemons;
  for (const TempDir* d : {&d0, &d1, &d2}) {
    daemons.push_back(std::make_unique<Daemon>(*d, Options(shared, "2s")));
  }
  const std::string runs = "select count(*) from runs where pipeline = '" + name + "'";
  std::vector<int> killed;
  for (int round = 0; round < 3; ++round) {
    int at = -1;
    WaitFor([&] { return (at = Leader(daemons)) >= 0; }, "a daemon to lead");
    WaitFor([&] { return Metric(*daemons[at], "kiln_leader") == 1; }, "the leader to say so");
    // It fires: three more runs while it leads.
    const int64_t before = Count(runs);
    WaitFor([&] { return Count(runs) >= before + 3; }, "three fires under the leader");
    if (round == 2) break;
    const std::string name_of_killed = Sql("select holder from leader");
    daemons[at]->Signal(SIGKILL);
    killed.push_back(at);
    // The runs it drove are taken over by the next leader and end.
    WaitFor(
        [&] {
          return Count("select count(*) from runs where pipeline = '" + name +
                       "' and state in ('queued', 'running') and lease_owner = '" + name_of_killed +
                       "'") == 0 &&
                 Leader(daemons) >= 0 && Leader(daemons) != at;
        },
        "another daemon to lead and take the killed one's runs");
  }
  for (int i = 0; i < static_cast<int>(daemons.size()); ++i) {
    if (std::find(killed.begin(), killed.end(), i) == killed.end()) CHECK(daemons[i]->Stop() == 0);
  }
  const int64_t n = Count(runs);
  // One run per second from the first fire to the last: none missed, none twice.
  CHECK(Sql("select count(distinct logical_date), extract(epoch from max(logical_date) - "
            "min(logical_date))::int from runs where pipeline = '" +
            name + "'") == std::to_string(n) + "|" + std::to_string(n - 1));
  // Three daemons led, one after the other, each in a term of its own.
  CHECK(Count("select count(distinct holder) from leader_terms") == 3);
  CHECK(Count("select count(*) from leader_terms l join leader_terms m on l.term < m.term and "
              "l.began_at > m.began_at") == 0);
  // Every run ended; no task had two attempts running at once (a start whose daemon was killed
  // before it reached the supervisor is lost and may be tried again: at least once).
  CHECK(Count("select count(*) from runs where pipeline = '" + name +
              "' and state in ('queued', 'running')") == 0);
  CHECK(Count("select count(*) from attempts a join attempts b on a.run_id = b.run_id and "
              "a.task_id = b.task_id and a.attempt < b.attempt where b.started_at < "
              "a.ended_at") == 0);
  for (const TempDir* d : {&d0, &d1, &d2}) {
    WaitFor([&] { return ProcessesMentioning(d->path().string()).empty(); },
            "every process of " + d->path().string() + " to end");
  }
}

TEST_CASE("pause through the leader and unpause through another daemon: the leader fires again") {
  TempDir shared, a_dir, b_dir;
  const std::string name = Unique("paused");
  WriteFile(shared / "pipelines/p.toml",
            Pipeline(name, "schedule = \"every 1s\"\nmax_active_runs = 50"));
  std::vector<std::unique_ptr<Daemon>> daemons;
  // A long lease: B's renewals are 100 s apart, so that only the notification of A's stop can
  // make B lead within the 60 s the waits below allow.
  daemons.push_back(std::make_unique<Daemon>(a_dir, Options(shared, "300s")));
  daemons.push_back(std::make_unique<Daemon>(b_dir, Options(shared, "300s")));
  // The first to start leads.
  REQUIRE(Leader(daemons) == 0);
  CHECK(Metric(*daemons[1], "kiln_leader") == 0);
  CHECK(Metric(*daemons[1], "kiln_leader_term") == -1);
  const std::string runs = "select count(*) from runs where pipeline = '" + name + "'";
  WaitFor([&] { return Count(runs) >= 1; }, "a first fire");
  auto a = daemons[0]->Client(kOperatorToken);
  auto b = daemons[1]->Client(kOperatorToken);
  REQUIRE(a.Post("/api/v1/pipelines/" + name + "/pause", "", kJson)->status == 200);
  // B learns it at once (its page and API show it paused).
  WaitFor([&] { return Body(b.Get("/api/v1/pipelines/" + name))["paused"] == true; },
          "B to show the pause");
  const int64_t paused_with = Count(runs);
  REQUIRE(b.Post("/api/v1/pipelines/" + name + "/unpause", "", kJson)->status == 200);
  // A, which paused it and fires its schedule, unpauses too and fires again.
  WaitFor([&] { return Body(a.Get("/api/v1/pipelines/" + name))["paused"] == false; },
          "A to show the unpause");
  WaitFor([&] { return Count(runs) >= paused_with + 2; }, "the leader to fire again");
  CHECK(Count("select count(*) from runs where pipeline = '" + name +
              "' and created_by = 'schedule' and lease_owner not like '%" +
              daemons[0]->data_dir().string() + "'") == 0);
  // The leader stops cleanly: it gives the lease up and B, told so, leads at once.
  CHECK(daemons[0]->Stop() == 0);
  WaitFor([&] { return Leader(daemons) == 1; }, "B to lead after A stopped");
  const int64_t with_b = Count(runs);
  WaitFor([&] { return Count(runs) >= with_b + 2; }, "B to fire");
  CHECK(Metric(*daemons[1], "kiln_leader") == 1);
  CHECK(daemons[1]->Stop() == 0);
  CHECK(Count("select count(*) from runs where pipeline = '" + name +
              "' and state not in ('success', 'cancelled')") == 0);
}

TEST_CASE("a reload asked through one daemon reads every daemon's folder again") {
  TempDir a_dir, b_dir, outside;
  const std::string name = Unique("reloaded");
  // Each daemon's folder holds a symbolic link to one file elsewhere (as a deploy tool that
  // swaps links does): their watches do not see that file change.
  WriteFile(outside / "p.toml", Pipeline(name, "description = \"v1\""));
  for (const TempDir* d : {&a_dir, &b_dir}) {
    std::filesystem::create_directories(*d / "pipelines");
    std::filesystem::create_symlink(outside / "p.toml", *d / "pipelines/p.toml");
  }
  Daemon a(a_dir, Options(a_dir, "30s"));
  Daemon b(b_dir, Options(b_dir, "30s"));
  auto description = [&](const Daemon& d) {
    return Body(d.Client(kViewerToken).Get("/api/v1/pipelines/" + name))["description"];
  };
  CHECK(description(a) == "v1");
  CHECK(description(b) == "v1");
  WriteFile(outside / "p.toml.new", Pipeline(name, "description = \"v2\""));
  std::filesystem::rename(outside / "p.toml.new", outside / "p.toml");
  // Each daemon's kiln.toml gets a new token too: every daemon reads its own again.
  const std::string added = "kiln_test_added_0123456789";
  for (const TempDir* d : {&a_dir, &b_dir}) {
    WriteFile(*d / "kiln.toml", ReadFile(*d / "kiln.toml") +
                                    "\n[[auth.tokens]]\nname = \"added\"\nrole = \"viewer\"\n"
                                    "sha256 = \"" +
                                    kiln::Sha256Hex(added) + "\"\n");
  }
  auto status = [&](const Daemon& d) {
    auto r = d.Client(added).Get("/api/v1/pipelines");
    REQUIRE(r);
    return r->status;
  };
  CHECK(status(b) == 401);
  // Asked through A, with the command line.
  const std::map<std::string, std::string> env = {
      {"KILN_SERVER", "http://127.0.0.1:" + std::to_string(a.port())},
      {"KILN_TOKEN", kOperatorToken}};
  CHECK(Kiln({"reload"}, {}, env).out ==
        "reload asked of every daemon on the database\nkiln.toml reloaded here (" +
            (a_dir / "kiln.toml").string() + "): auth.tokens applied\n");
  CHECK(status(a) == 200);
  WaitFor([&] { return description(a) == "v2"; }, "A to read the new version");
  WaitFor([&] { return description(b) == "v2"; }, "B to read the new version");
  WaitFor([&] { return status(b) == 200; }, "B to take the new token");
  // Each daemon records the load once, with the version it read.
  WaitFor(
      [&] {
        return Count("select count(*) from events where pipeline = '" + name +
                     "' and kind = 'pipeline_loaded'") == 2;
      },
      "both loads to be recorded");
  CHECK(a.Stop() == 0);
  CHECK(b.Stop() == 0);
}
