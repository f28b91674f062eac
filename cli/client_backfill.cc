// `kiln backfill`: create a backfill and follow it, show its progress, or cancel it.
#include <cstdio>

#include "cli/client_cmds.h"
#include "cli/client_util.h"

namespace kiln::cli {

namespace {

// RFC 3339 as is; a bare date (2026-11-01) means its midnight in UTC.
std::string Instant(const std::string& text) {
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') return text + "T00:00:00Z";
  return text;
}

void PrintBackfill(const json& b) {
  std::printf(
      "backfill %s of %s: %s, %s/%s runs done (%d succeeded, %d failed, %d cancelled, "
      "%d running, %d waiting)\n",
      Text(At(b, "id")).c_str(), Text(At(b, "pipeline")).c_str(), Text(At(b, "state")).c_str(),
      Text(At(b, "done")).c_str(), Text(At(b, "total")).c_str(),
      AsInt(At(At(b, "runs"), "success")), AsInt(At(At(b, "runs"), "failed")),
      AsInt(At(At(b, "runs"), "cancelled")), AsInt(At(At(b, "runs"), "running")),
      AsInt(At(At(b, "runs"), "queued")));
}

}  // namespace

int ClientBackfill(const ClientOptions& options, const BackfillOptions& o) {
  int code = 0;
  auto client = Connect(options, &code);
  if (!client) return code;
  const bool json_out = options.output == "json";
  if (!o.cancel.empty() || !o.status.empty()) {
    const std::string& id = o.cancel.empty() ? o.status : o.cancel;
    if (!ValidRunId(id)) {
      return Fail(Status::Error("backfill id '" + id + "' must be a positive integer"));
    }
    auto b = o.cancel.empty() ? client->Get("/api/v1/backfills/" + id)
                              : client->Post("/api/v1/backfills/" + id + "/cancel", json::object());
    if (!b.ok()) return Fail(b.status());
    json_out ? (void)(std::cout << b->dump(2) << '\n') : PrintBackfill(*b);
    return 0;
  }
  if (o.pipeline.empty() || o.from.empty() || o.to.empty()) {
    return Fail(
        Status::Error("give a pipeline with --from and --to, or --status ID, or --cancel ID"));
  }
  json body = {{"from", Instant(o.from)}, {"to", Instant(o.to)}};
  if (o.max_active_runs > 0) body["max_active_runs"] = o.max_active_runs;
  auto created = client->Post("/api/v1/pipelines/" + UrlEncode(o.pipeline) + "/backfills", body);
  if (!created.ok()) return Fail(created.status());
  const std::string id = Text(At(*created, "id"));
  if (!json_out) {
    // Shown at once even when stdout is a pipe: a Ctrl-C of --wait must not lose it.
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const std::string total = Text(At(*created, "total"));
    std::printf("backfill %s of %s: %s %s for the fires from %s to %s, at most %s at a time\n",
                id.c_str(), o.pipeline.c_str(), total.c_str(), total == "1" ? "run" : "runs",
                Text(At(*created, "from")).c_str(), Text(At(*created, "to")).c_str(),
                Text(At(*created, "max_active_runs")).c_str());
  }
  if (!o.wait) {
    if (json_out) std::cout << created->dump(2) << '\n';
    return 0;
  }
  // Follows the pipeline's events from the backfill's creation; each run end re-reads it (on a
  // second connection: the first one carries the stream).
  auto reader = Connect(options, &code);
  if (!reader) return code;
  json last = *created;
  const std::string path = "/api/v1/events?pipeline=" + UrlEncode(o.pipeline) +
                           "&after=" + Text(At(*created, "event_id"));
  Status followed = Status::Ok();
  if (At(last, "state") == "running") {
    Status streamed = client->Events(path, [&](const json& e) {
      if (At(e, "kind") != "run_state") return true;
      auto b = reader->Get("/api/v1/backfills/" + id);
      if (!b.ok()) {
        followed = b.status();
        return false;
      }
      if (At(*b, "done") != At(last, "done") && !json_out) {
        std::fprintf(stderr, "backfill %s: %s/%s runs done\n", id.c_str(),
                     Text(At(*b, "done")).c_str(), Text(At(*b, "total")).c_str());
      }
      last = *b;
      return At(last, "state") == "running";
    });
    if (followed.ok()) followed = streamed;
  }
  if (!followed.ok()) return Fail(followed);
  json_out ? (void)(std::cout << last.dump(2) << '\n') : PrintBackfill(last);
  return At(last, "state") == "success" ? 0 : 1;
}

}  // namespace kiln::cli
