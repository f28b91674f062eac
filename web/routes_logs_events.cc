// Attempts, attempt logs (a byte range, or followed as the log grows) and the event stream.
// Streams are chunked responses whose step the front calls again and again on a stream thread
// (web/front.h); each step never blocks longer than kSlice, so a stream whose client went away
// or a server that stops ends within it.
#include <algorithm>
#include <chrono>
#include <limits>
#include <thread>

#include "common/log.h"
#include "web/input.h"
#include "web/internal.h"
#include "web/range.h"
#include "web/render.h"

namespace kiln::web {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t kMaxLogBytes = 1 << 20;
constexpr size_t kFollowChunk = 64 << 10;
constexpr int kEventBatch = 1000;
// Streams wait in slices this long, so that a client's going away or Server::Stop() ends them
// soon (and frees their slot).
constexpr milliseconds kSlice{250};
// A followed log without new output for this long ends (the client may follow again from where
// it stopped).
constexpr auto kFollowIdle = std::chrono::minutes(5);
// After a wait that returned early yet brought nothing new, a stream pauses this long before it
// waits again, so that a service whose waits return at once cannot make it spin.
constexpr milliseconds kIdlePause{100};

std::string SseEvent(const scheduler::EventRecord& e) {
  std::string kind = e.kind;
  for (char& c : kind) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return "id: " + std::to_string(e.id) + "\nevent: " + kind +
         "\ndata: " + RenderEvent(e).dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

void ListAttempts(Call& call) {
  if (!AcceptQuery(call, {})) return;
  auto run = RunArg(call, call.args[0]);
  if (!run || !CheckTaskArg(call, call.args[1])) return;
  auto attempts = call.ctx.service.ListAttempts(*run, call.args[1]);
  if (!attempts.ok()) return SendStatus(call.res, attempts.status());
  json list = json::array();
  for (const auto& a : *attempts) list.push_back(RenderAttempt(a));
  SendJson(call.res, 200, {{"attempts", std::move(list)}});
}

struct LogQuery {
  uint64_t offset = 0;
  size_t limit = kMaxLogBytes;
  bool follow = false;
};

Status ReadLogQuery(const Request& req, LogQuery& q) {
  if (auto v = QueryValue(req, "offset")) {
    auto n = ParseDecimal(*v, 0);
    if (!n)
      return QueryError("offset", "must be a byte offset (a whole number), not " + Quoted(*v));
    q.offset = static_cast<uint64_t>(*n);
  }
  if (auto v = QueryValue(req, "limit")) {
    auto n = ParseCount(*v);
    if (!n || *n < 1) {
      return QueryError("limit", "must be a number of bytes from 1 to 1048576, not " + Quoted(*v));
    }
    q.limit = static_cast<size_t>(std::min<int64_t>(*n, kMaxLogBytes));
  }
  if (auto v = QueryValue(req, "follow")) {
    if (*v != "true" && *v != "false") {
      return QueryError("follow", "must be true or false, not " + Quoted(*v));
    }
    q.follow = *v == "true";
  }
  return Status::Ok();
}

void SetLogHeaders(Response& res, const scheduler::LogChunk& chunk) {
  res.set_header("X-Log-Offset", std::to_string(chunk.offset));
  res.set_header("X-Log-Size", std::to_string(chunk.size));
  res.set_header("X-Log-Finished", chunk.finished ? "true" : "false");
}

// A followed log: sends what is there, waits for more, ends once the attempt has ended and
// everything is sent.
class LogStream {
 public:
  LogStream(Context& ctx, std::shared_ptr<const Token> token, RunId run, std::string task,
            int attempt, scheduler::LogChunk first, std::shared_ptr<void> slot)
      : ctx_(ctx),
        token_(std::move(token)),
        run_(run),
        task_(std::move(task)),
        attempt_(attempt),
        offset_(first.offset),
        pending_(std::move(first.data)),
        slot_(std::move(slot)) {}

  bool Step(DataSink& sink) {
    if (!pending_.empty()) {
      std::string data = std::move(pending_);
      pending_.clear();
      offset_ += data.size();
      last_output_ = Clock::now();
      return sink.write(data.data(), data.size());
    }
    if (ctx_.stopping || Clock::now() - last_output_ >= kFollowIdle || Revoked(ctx_, *token_)) {
      sink.done();
      return true;
    }
    if (read_) {
      auto chunk = ctx_.service.ReadLog(run_, task_, attempt_, offset_, kFollowChunk);
      if (!chunk.ok()) return false;  // cut short: the client sees an incomplete response
      if (!chunk->data.empty()) {
        offset_ = chunk->offset;
        pending_ = std::move(chunk->data);
        return true;
      }
      if (chunk->finished || stopped_) {
        sink.done();
        return true;
      }
      if (woke_) std::this_thread::sleep_for(kIdlePause);
    }
    // The wait is level-triggered: an early return means the log may have grown or ended.
    auto started = Clock::now();
    stopped_ = !ctx_.service.WaitForLog(run_, task_, attempt_, offset_, kSlice);
    read_ = woke_ = stopped_ || Clock::now() - started < kSlice;
    return true;
  }

 private:
  Context& ctx_;
  std::shared_ptr<const Token> token_;  // the caller's: the stream ends once it is removed
  RunId run_;
  std::string task_;
  int attempt_;
  uint64_t offset_;
  std::string pending_;   // read, not yet sent
  bool read_ = true;      // whether the next step reads (else it only waits)
  bool woke_ = false;     // the last wait returned early
  bool stopped_ = false;  // the service is stopping: send what is left, then end
  Clock::time_point last_output_ = Clock::now();
  std::shared_ptr<void> slot_;
};

void FollowLog(Call& call, RunId run, const std::string& task, int attempt, uint64_t offset) {
  auto slot = call.ctx.streams.TryAcquire();
  if (!slot) {
    return SendError(call.res, 503, "unavailable",
                     "too many streams are open; close one or try again later");
  }
  auto first = call.ctx.service.ReadLog(run, task, attempt, offset, kFollowChunk);
  if (!first.ok()) return SendStatus(call.res, first.status());
  SetLogHeaders(call.res, *first);
  auto stream = std::make_shared<LogStream>(call.ctx, call.token, run, task, attempt,
                                            std::move(first).value(), std::move(slot));
  call.res.set_stream("text/plain; charset=utf-8",
                      [stream](DataSink& sink) { return stream->Step(sink); });
}

// A log read by the Range header (one range; at most kMaxLogBytes of it per response).
void SendLogRange(Call& call, RunId run, const std::string& task, int attempt) {
  auto size = call.ctx.service.ReadLog(run, task, attempt, 0, 0);
  if (!size.ok()) return SendStatus(call.res, size.status());
  RangeRequest range = ParseRange(call.req.get_header_value("Range"), size->size);
  if (range.kind == RangeRequest::kRefused) {
    call.res.set_header("Content-Range", "bytes */" + std::to_string(size->size));
    return SendError(call.res, 416, "range_not_satisfiable", "Range: " + range.why);
  }
  uint64_t first = range.kind == RangeRequest::kOne ? range.first : 0;
  uint64_t want = range.kind == RangeRequest::kOne ? range.last - range.first + 1 : kMaxLogBytes;
  auto chunk = call.ctx.service.ReadLog(
      run, task, attempt, first, static_cast<size_t>(std::min<uint64_t>(want, kMaxLogBytes)));
  if (!chunk.ok()) return SendStatus(call.res, chunk.status());
  SetLogHeaders(call.res, *chunk);
  if (range.kind == RangeRequest::kOne && !chunk->data.empty()) {
    call.res.status = 206;
    call.res.set_header("Content-Range",
                        "bytes " + std::to_string(chunk->offset) + "-" +
                            std::to_string(chunk->offset + chunk->data.size() - 1) + "/" +
                            std::to_string(chunk->size));
  } else {
    call.res.status = 200;
  }
  call.res.set_content(std::move(chunk->data), "text/plain; charset=utf-8");
}

void GetLog(Call& call) {
  if (!AcceptQuery(call, {"offset", "limit", "follow"})) return;
  auto run = RunArg(call, call.args[0]);
  if (!run || !CheckTaskArg(call, call.args[1])) return;
  auto attempt = AttemptArg(call, call.args[2]);
  if (!attempt) return;
  LogQuery q;
  if (Status read = ReadLogQuery(call.req, q); !read.ok()) return SendStatus(call.res, read);
  if (q.follow) return FollowLog(call, *run, call.args[1], *attempt, q.offset);
  if (call.req.has_header("Range")) {
    if (QueryValue(call.req, "offset") || QueryValue(call.req, "limit")) {
      return SendError(call.res, 400, "invalid_argument",
                       "give the bytes wanted either as offset and limit or as a Range header");
    }
    return SendLogRange(call, *run, call.args[1], *attempt);
  }
  auto chunk = call.ctx.service.ReadLog(*run, call.args[1], *attempt, q.offset, q.limit);
  if (!chunk.ok()) return SendStatus(call.res, chunk.status());
  SetLogHeaders(call.res, *chunk);
  call.res.status = 200;
  call.res.set_content(chunk->data, "text/plain; charset=utf-8");
}

// The event stream: sends what is there in batches, waits for more, a comment after silence.
class EventStream {
 public:
  EventStream(Context& ctx, std::shared_ptr<const Token> token, scheduler::EventFilter filter,
              std::shared_ptr<void> slot)
      : ctx_(ctx),
        token_(std::move(token)),
        filter_(std::move(filter)),
        cursor_(filter_.after),
        slot_(std::move(slot)) {}

  bool Step(DataSink& sink) {
    if (!greeted_) {
      greeted_ = true;  // tells the client the stream is set up: it has its starting point
      return Write(sink, ": connected\n\n");
    }
    if (ctx_.stopping || Revoked(ctx_, *token_)) {
      sink.done();
      return true;
    }
    if (read_) {
      int64_t before = cursor_;
      auto more = Pump(sink);
      if (!more.ok()) return false;  // cut short; the client reconnects with Last-Event-ID
      if (*more) return true;
      if (woke_ && cursor_ == before) std::this_thread::sleep_for(kIdlePause);
    }
    auto keep_alive = ctx_.options.stream_keep_alive;
    auto silent = Clock::now() - last_write_;
    if (silent >= keep_alive) {
      read_ = false;
      return Write(sink, ": keep-alive\n\n");
    }
    auto wait =
        std::max(milliseconds(1),
                 std::min(kSlice, std::chrono::duration_cast<milliseconds>(keep_alive - silent)));
    // The wait is level-triggered: an early return means events after cursor_ may exist.
    auto started = Clock::now();
    if (!ctx_.service.WaitForEvents(cursor_, wait)) {
      sink.done();
      return true;
    }
    read_ = woke_ = Clock::now() - started < wait;
    return true;
  }

 private:
  bool Write(DataSink& sink, const std::string& text) {
    last_write_ = Clock::now();
    return sink.write(text.data(), text.size());
  }

  // Sends the events after cursor_ (one batch); true when a full batch leaves more to send.
  Result<bool> Pump(DataSink& sink) {
    // With a filter, the events skipped must still move the cursor, or every wait would return
    // at once: everything up to `seen` existed before the listing below. (The id the waits
    // compare with, known without a query: a stream following a run costs the database one
    // listing per commit, not two statements.)
    int64_t seen = cursor_;
    if (filter_.pipeline || filter_.run) seen = std::max(cursor_, ctx_.service.NewestEventSeen());
    scheduler::EventFilter filter = filter_;
    filter.after = cursor_;
    filter.limit = kEventBatch;
    auto events = ctx_.service.ListEvents(filter);
    if (!events.ok()) return events.status();
    for (const auto& e : *events) {
      if (!Write(sink, SseEvent(e))) return Status::Error("event stream: the client went away");
    }
    if (events->size() >= static_cast<size_t>(kEventBatch)) {
      cursor_ = events->back().id;
      return true;
    }
    cursor_ = std::max(events->empty() ? cursor_ : events->back().id, seen);
    return false;
  }

  Context& ctx_;
  std::shared_ptr<const Token> token_;  // the caller's: the stream ends once it is removed
  scheduler::EventFilter filter_;
  int64_t cursor_;  // every event up to here is sent or filtered out
  bool greeted_ = false;
  bool read_ = true;   // whether the next step lists events (else it only waits)
  bool woke_ = false;  // the last wait returned early
  Clock::time_point last_write_ = Clock::now();
  std::shared_ptr<void> slot_;
};

// Fills the filter's pipeline and run; returns where to resume (Last-Event-ID, else ?after=).
Result<std::optional<int64_t>> ReadEventQuery(const Request& req, scheduler::EventFilter& filter) {
  if (auto pipeline = QueryValue(req, "pipeline")) {
    if (Status ok = CheckPipelineName(*pipeline); !ok.ok())
      return QueryError("pipeline", ok.message());
    filter.pipeline = *pipeline;
  }
  if (auto run = QueryValue(req, "run")) {
    auto id = ParseDecimal(*run, 1);
    if (!id) return QueryError("run", "must be a run id (a positive integer), not " + Quoted(*run));
    filter.run = RunId{*id};
  }
  if (req.has_header("Last-Event-ID")) {
    std::string text = req.get_header_value("Last-Event-ID");
    auto id = ParseDecimal(text, 0);
    if (!id) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "header Last-Event-ID must be an event id, not " + Quoted(text));
    }
    return std::optional<int64_t>(*id);
  }
  if (auto after = QueryValue(req, "after")) {
    auto id = ParseDecimal(*after, 0);
    if (!id) return QueryError("after", "must be an event id, not " + Quoted(*after));
    return std::optional<int64_t>(*id);
  }
  return std::optional<int64_t>();
}

void Events(Call& call) {
  if (!AcceptQuery(call, {"pipeline", "run", "after"})) return;
  scheduler::EventFilter filter;
  auto resume = ReadEventQuery(call.req, filter);
  if (!resume.ok()) return SendStatus(call.res, resume.status());
  auto slot = call.ctx.streams.TryAcquire();
  if (!slot) {
    return SendError(call.res, 503, "unavailable",
                     "too many streams are open; close one or try again later");
  }
  if (*resume) {
    filter.after = **resume;
  } else {
    auto newest = call.ctx.service.LastEventId();  // only new events
    if (!newest.ok()) return SendStatus(call.res, newest.status());
    filter.after = *newest;
  }
  call.res.set_header("X-Accel-Buffering", "no");
  auto stream =
      std::make_shared<EventStream>(call.ctx, call.token, std::move(filter), std::move(slot));
  call.res.set_stream("text/event-stream", [stream](DataSink& sink) { return stream->Step(sink); });
}

}  // namespace

std::vector<Route> StreamRoutes() {
  return {
      {"GET", "/api/v1/runs/{id}/tasks/{task}/attempts", Role::kViewer, ListAttempts},
      {"GET", "/api/v1/runs/{id}/tasks/{task}/attempts/{n}/log", Role::kViewer, GetLog},
      {"GET", "/api/v1/events", Role::kViewer, Events},
  };
}

}  // namespace kiln::web
