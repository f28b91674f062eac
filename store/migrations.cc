#include "store/migrations.h"

namespace kiln::store {

namespace {

// Version 1: the whole model of design.md's Storage and Scaling sections. Terminal task states
// are success, failed, skipped, upstream_failed, cancelled; terminal run states success, failed,
// cancelled. Indexes that the scheduler uses are partial on non-terminal states so that finished
// history does not slow it down.
constexpr std::string_view kInitialSchema = R"sql(
CREATE TABLE pipeline_versions (
  pipeline     text NOT NULL,
  content_hash text NOT NULL,
  source       text NOT NULL,
  loaded_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, content_hash)
);

CREATE TABLE runs (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  pipeline            text NOT NULL,
  version_hash        text NOT NULL,
  trigger             text NOT NULL,
  logical_date        timestamptz NOT NULL,
  data_interval_start timestamptz,
  data_interval_end   timestamptz,
  params              jsonb NOT NULL DEFAULT '[]',
  state               text NOT NULL DEFAULT 'queued'
                      CHECK (state IN ('queued', 'running', 'success', 'failed', 'cancelled')),
  idempotency_key     text,
  created_by          text NOT NULL DEFAULT '',
  note                text NOT NULL DEFAULT '',
  -- The daemon driving the run when several share the database; it renews the lease.
  lease_owner         text,
  lease_expires_at    timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  ended_at            timestamptz,
  FOREIGN KEY (pipeline, version_hash) REFERENCES pipeline_versions (pipeline, content_hash)
);
-- No scheduled run is created twice, whichever daemon fires the cron first.
CREATE UNIQUE INDEX runs_scheduled_once ON runs (pipeline, logical_date)
  WHERE trigger = 'schedule';
CREATE UNIQUE INDEX runs_idempotency_key ON runs (pipeline, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_active ON runs (pipeline, id) WHERE state IN ('queued', 'running');
CREATE INDEX runs_by_pipeline ON runs (pipeline, id DESC);

CREATE TABLE task_instances (
  run_id           bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  task_id          text NOT NULL,
  position         int NOT NULL,  -- order in the pipeline file
  state            text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'queued', 'running', 'up_for_retry', 'success',
                                    'failed', 'skipped', 'upstream_failed', 'cancelled')),
  -- The fencing token: the number of the latest attempt (0 = none yet).
  attempt          int NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  pool             text NOT NULL,
  priority         int NOT NULL DEFAULT 0,
  lease_owner      text,
  lease_expires_at timestamptz,
  retry_at         timestamptz,
  exit_code        int,
  signal           int,
  started_at       timestamptz,
  ended_at         timestamptz,
  PRIMARY KEY (run_id, task_id),
  UNIQUE (run_id, position)
);
-- Claims by daemons and workers: WHERE state = 'queued' AND pool = $1
-- ORDER BY priority DESC, run_id, position FOR UPDATE SKIP LOCKED.
CREATE INDEX task_instances_claimable ON task_instances (pool, priority DESC, run_id, position)
  WHERE state = 'queued';
CREATE INDEX task_instances_active ON task_instances (run_id)
  WHERE state IN ('pending', 'queued', 'running', 'up_for_retry');
-- Expired leases of attempts whose owner was cut off.
CREATE INDEX task_instances_leases ON task_instances (lease_expires_at) WHERE state = 'running';
CREATE INDEX task_instances_retries ON task_instances (retry_at) WHERE state = 'up_for_retry';

CREATE TABLE attempts (
  run_id      bigint NOT NULL,
  task_id     text NOT NULL,
  attempt     int NOT NULL CHECK (attempt >= 1),
  state       text NOT NULL
              CHECK (state IN ('running', 'success', 'failed', 'skipped', 'cancelled')),
  log_path    text NOT NULL DEFAULT '',
  lease_owner text NOT NULL DEFAULT '',
  started_at  timestamptz NOT NULL,
  ended_at    timestamptz,
  exit_code   int,
  signal      int,
  timed_out   boolean NOT NULL DEFAULT false,
  cpu_ms      bigint,
  max_rss_kb  bigint,
  reason      text NOT NULL DEFAULT '',
  PRIMARY KEY (run_id, task_id, attempt),
  FOREIGN KEY (run_id, task_id) REFERENCES task_instances (run_id, task_id) ON DELETE CASCADE
);

-- Append-only audit of every transition. No foreign keys: a fenced update for a run that does
-- not exist is still recorded.
CREATE TABLE events (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at         timestamptz NOT NULL,
  run_id     bigint,
  task_id    text,
  attempt    int,
  kind       text NOT NULL,  -- run_created | run_state | task_state | fenced
  from_state text,
  to_state   text,
  actor      text NOT NULL DEFAULT '',
  detail     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_run ON events (run_id, id);

-- Daemons and workers sharing the database, with their heartbeats.
CREATE TABLE daemons (
  name         text PRIMARY KEY,  -- the lease owner name, e.g. "host:pid"
  hostname     text NOT NULL,
  pid          int,
  version      text NOT NULL DEFAULT '',
  started_at   timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
)sql";

// Version 2: what the v1 HTTP API needs (docs/api.md).
// - events.pipeline, so that an event stream filtered by pipeline reads one index range; filled
//   for existing rows from their runs (fenced updates of unknown runs keep NULL). Pipeline events
//   (pause, unpause) have no run but do have a pipeline.
// - pipelines: the pause state set through the API, which overrides the file's `paused`. A
//   pipeline without a row follows its file.
constexpr std::string_view kApiSchema = R"sql(
ALTER TABLE events ADD COLUMN pipeline text;
UPDATE events SET pipeline = runs.pipeline FROM runs WHERE events.run_id = runs.id;
CREATE INDEX events_by_pipeline ON events (pipeline, id);

CREATE TABLE pipelines (
  name       text PRIMARY KEY,
  paused     boolean NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text NOT NULL DEFAULT ''
);
)sql";

// Migration 3, schedules:
// - pipelines also keeps each scheduled pipeline's fire cursor (the latest fire instant dealt
//   with: run created or skipped) and how many fires were skipped. A row may now exist without a
//   pause state (paused NULL: the file's `paused` applies).
// - runs.triggered_by: the run whose success started this one (pipeline-completion triggers).
constexpr std::string_view kScheduleSchema = R"sql(
ALTER TABLE pipelines ALTER COLUMN paused DROP NOT NULL;
ALTER TABLE pipelines ADD COLUMN fire_cursor timestamptz;
ALTER TABLE pipelines ADD COLUMN fires_skipped bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN triggered_by bigint REFERENCES runs (id);
)sql";

// Migration 4, backfills: a backfill is a set of runs (runs.backfill_id) for the fires of a
// range, carried out under their own limit of active runs. Its progress is counted from its runs.
constexpr std::string_view kBackfillSchema = R"sql(
CREATE TABLE backfills (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  pipeline        text NOT NULL,
  range_from      timestamptz NOT NULL,
  range_to        timestamptz NOT NULL,
  max_active_runs int NOT NULL CHECK (max_active_runs >= 1),
  cancelled       boolean NOT NULL DEFAULT false,
  created_by      text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX backfills_by_pipeline ON backfills (pipeline, id DESC);
ALTER TABLE runs ADD COLUMN backfill_id bigint REFERENCES backfills (id);
CREATE INDEX runs_by_backfill ON runs (backfill_id, id) WHERE backfill_id IS NOT NULL;
)sql";

// Migration 5, leases and recovery (docs/design.md, "Surviving restarts"):
// - daemons: every process that holds a lease: a daemon holds the runs it drives
//   (runs.lease_owner = its name), a supervisor the attempts it runs (task_instances.lease_owner
//   and attempts.lease_owner = its name). Each moves its expires_at forward; the database's
//   clock decides when a lease has expired. `term` grows each time another process takes over
//   what a lease held, so that its holder learns of it at its next renewal.
// - runs.cancel_requested_at / cancel_reason: a cancel asked of a run, acted on by whichever
//   daemon drives it (also one that takes it over later) and by the attempts' supervisors.
// - task_instances.round_base: retries count from the first attempt of the current round.
// - attempts.outcome: the end as the attempt's supervisor recorded it (exit status, resource use),
//   before the run's owner decided the task's state from it. Null while it runs.
// - indexes for the lease sweep and for retention (old ended runs by their end, events by time);
//   a run that triggered another may be deleted (the other forgets it: triggered_by NULL).
constexpr std::string_view kLeaseSchema = R"sql(
ALTER TABLE daemons ADD COLUMN kind text NOT NULL DEFAULT 'daemon'
  CHECK (kind IN ('daemon', 'supervisor'));
ALTER TABLE daemons ADD COLUMN expires_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE daemons ADD COLUMN daemon text;
ALTER TABLE daemons ADD COLUMN term bigint NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE runs ADD COLUMN cancel_reason text;
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE state IN ('queued', 'running');
CREATE INDEX runs_ended ON runs (ended_at) WHERE state IN ('success', 'failed', 'cancelled');
ALTER TABLE task_instances ADD COLUMN round_base int NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN outcome jsonb;
CREATE INDEX attempts_open ON attempts (lease_owner) WHERE state = 'running';
CREATE INDEX events_by_time ON events (at);
ALTER TABLE runs DROP CONSTRAINT runs_triggered_by_fkey,
  ADD CONSTRAINT runs_triggered_by_fkey FOREIGN KEY (triggered_by) REFERENCES runs (id)
  ON DELETE SET NULL;
)sql";

// Migration 6, results of attempts (docs/pipelines.md, "inputs, outputs and metrics"):
// - attempts.results: what was collected when a successful attempt ended: its declared inputs
//   and outputs with their SHA-256, and its metrics (plugins/collect.h); since protocol 6 also
//   a kind's decision when it ended with its skip code (a gate that did not pass).
// - artifacts: one row per file of a successful attempt's results, for lineage: which attempt
//   read (input) or wrote (output) which content at which path. Deleted with its attempt.
// - attempts_asking: successes whose kind's report asks for a run (drift triggers), for the
//   daemon to answer those a crash left unanswered.
constexpr std::string_view kResultsSchema = R"sql(
ALTER TABLE attempts ADD COLUMN results jsonb;
CREATE TABLE artifacts (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sha256      text NOT NULL,
  path        text NOT NULL,
  bytes       bigint NOT NULL,
  role        text NOT NULL CHECK (role IN ('input', 'output')),
  run_id      bigint NOT NULL,
  task_id     text NOT NULL,
  attempt     int NOT NULL,
  recorded_at timestamptz NOT NULL,
  FOREIGN KEY (run_id, task_id, attempt) REFERENCES attempts (run_id, task_id, attempt)
    ON DELETE CASCADE
);
CREATE INDEX artifacts_by_sha256 ON artifacts (sha256, id);
CREATE INDEX artifacts_by_path ON artifacts (path, id);
CREATE INDEX artifacts_by_attempt ON artifacts (run_id, task_id, attempt);
CREATE INDEX attempts_asking ON attempts (ended_at) WHERE results->'report' ? 'trigger';
)sql";

// Migration 7, the model registry (docs/pipelines.md, kind = "gate"):
// - models: a name and its champion (a version number, NULL while none).
// - model_versions: numbered versions of a model, each an artifact kept by content hash under
//   the daemon's data folder, the metrics and the gate's decision that registered it, and the
//   run that produced it (numbers only: a version outlives its run's retention). One version per
//   gate task of a run: registering again finds it.
// - model_promotions: every change of champion, for the history and for rollback.
constexpr std::string_view kRegistrySchema = R"sql(
CREATE TABLE models (
  name       text PRIMARY KEY,
  champion   int,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE model_versions (
  model        text NOT NULL REFERENCES models (name),
  version      int NOT NULL CHECK (version >= 1),
  sha256       text NOT NULL,
  bytes        bigint NOT NULL,
  metrics      jsonb NOT NULL,
  decision     jsonb NOT NULL,
  run_id       bigint NOT NULL,
  task_id      text NOT NULL,
  pipeline     text NOT NULL,
  version_hash text NOT NULL,
  params       jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (model, version),
  UNIQUE (run_id, task_id)
);
CREATE TABLE model_promotions (
  id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  model   text NOT NULL REFERENCES models (name),
  version int NOT NULL,
  how     text NOT NULL CHECK (how IN ('gate', 'promote', 'rollback')),
  actor   text NOT NULL,
  at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
);
CREATE INDEX model_promotions_by_model ON model_promotions (model, id);
CREATE INDEX attempts_promoting ON attempts (ended_at) WHERE results->'report' ? 'promote';
)sql";

// Approvals: a task that waits (for an operator) holds the state 'waiting', what it waits for
// and, in retry_at, its deadline. The operator's inbox reads task_instances_waiting.
constexpr std::string_view kWaitingSchema = R"sql(
ALTER TABLE task_instances DROP CONSTRAINT task_instances_state_check,
  ADD CONSTRAINT task_instances_state_check
    CHECK (state IN ('pending', 'queued', 'running', 'up_for_retry', 'waiting', 'success',
                     'failed', 'skipped', 'upstream_failed', 'cancelled')),
  ADD COLUMN waiting_for text;
DROP INDEX task_instances_active;
CREATE INDEX task_instances_active ON task_instances (run_id)
  WHERE state IN ('pending', 'queued', 'running', 'up_for_retry', 'waiting');
CREATE INDEX task_instances_waiting ON task_instances (waiting_for, run_id)
  WHERE state = 'waiting';
)sql";

// The result cache: a successful attempt of a task with cache = true keeps its cache key;
// invalidating sets it to null and records when, so that an attempt that started before is not
// given its key afterwards.
constexpr std::string_view kCacheSchema = R"sql(
ALTER TABLE attempts ADD COLUMN cache_key text;
CREATE INDEX attempts_cache ON attempts (cache_key, ended_at DESC) WHERE cache_key IS NOT NULL;
CREATE TABLE cache_invalidations (
  pipeline text NOT NULL,
  task_id  text,  -- null: every task of the pipeline
  at       timestamptz NOT NULL
);
CREATE INDEX cache_invalidations_by_pipeline ON cache_invalidations (pipeline, at);
)sql";

// Notifications: an outbox of webhook deliveries, one row per (run, event, subject, webhook),
// claimed by a daemon (next_at moved ahead as a lease), retried with backoff.
constexpr std::string_view kNotifySchema = R"sql(
CREATE TABLE notifications (
  id         bigserial PRIMARY KEY,
  run_id     bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
  event      text NOT NULL,            -- success | failed | cancelled | sla_missed | retry
  subject    text NOT NULL DEFAULT '', -- retry: '<task>#<attempt>'
  webhook    text NOT NULL,            -- as configured: secrets are not rendered here
  format     text NOT NULL,
  state      text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  tries      int NOT NULL DEFAULT 0,
  next_at    timestamptz NOT NULL DEFAULT now(),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (run_id, event, subject, webhook)
);
CREATE INDEX notifications_due ON notifications (next_at) WHERE state = 'pending';
CREATE INDEX events_sla_missed ON events (run_id) WHERE kind = 'sla_missed';
)sql";

// for_each: a mapped task's instances are task_instances rows of their own ("train[3]"), at
// positions after the pipeline's tasks, naming their parent, their place in the list and item.
constexpr std::string_view kForEachSchema = R"sql(
ALTER TABLE task_instances ADD COLUMN parent text;
ALTER TABLE task_instances ADD COLUMN map_index int;
ALTER TABLE task_instances ADD COLUMN item json;  -- json keeps an item's text as written
)sql";

// Migration 12, remote workers (docs/design.md, "Remote workers"):
// - attempts handed to workers: lease_owner '(dispatched)' until a worker's supervisor claims
//   them (then its lease name), with their pool, priority, slots and launch (the supervisor
//   protocol's start body, executor/wire.h) and who claimed them when; the launch is dropped at
//   the end. stop_requested: the daemon asked a worker to stop it (a mark, a kill), kept so that
//   the worker's supervisor finds it at its next renewal if the notification was missed.
// - pools: the slots of each pool across every daemon and worker, written by daemons; a claim
//   locks its pools' rows and counts the claimed attempts still running.
// - log_chunks: the logs of attempts run by workers, shipped as they grow.
// - worker_history: every claim, renewal, end and refused end of workers, for audits and the
//   invariant checks of the tests.
// - daemons rows of kind 'worker', naming their pools and slots.
// - a trigger that notifies 'kiln_dispatch' when a worker's attempt ends: a claim that found its
//   pool full waits for that, not for a timer.
constexpr std::string_view kWorkerSchema = R"sql(
ALTER TABLE attempts ADD COLUMN pool text;
ALTER TABLE attempts ADD COLUMN priority int NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN launch bytea;
ALTER TABLE attempts ADD COLUMN dispatched_at timestamptz;
ALTER TABLE attempts ADD COLUMN claimed_at timestamptz;
ALTER TABLE attempts ADD COLUMN worker text;
ALTER TABLE attempts ADD COLUMN slots int NOT NULL DEFAULT 1;
ALTER TABLE attempts ADD COLUMN stop_requested boolean NOT NULL DEFAULT false;
CREATE INDEX attempts_dispatched ON attempts (pool, priority DESC, dispatched_at)
  WHERE lease_owner = '(dispatched)' AND state = 'running';
CREATE INDEX attempts_claimed ON attempts (pool)
  WHERE worker IS NOT NULL AND state = 'running';
CREATE TABLE pools (
  name       text PRIMARY KEY,
  slots      int NOT NULL CHECK (slots >= 1),
  updated_by text NOT NULL DEFAULT '',
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE log_chunks (
  run_id  bigint NOT NULL,
  task_id text NOT NULL,
  attempt int NOT NULL,
  "offset" bigint NOT NULL,
  data    bytea NOT NULL,
  PRIMARY KEY (run_id, task_id, attempt, "offset"),
  FOREIGN KEY (run_id, task_id, attempt) REFERENCES attempts (run_id, task_id, attempt)
    ON DELETE CASCADE
);
CREATE TABLE worker_history (
  id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  worker  text NOT NULL,
  kind    text NOT NULL CHECK (kind IN ('claim', 'renew', 'end', 'refused')),
  run_id  bigint,
  task_id text,
  attempt int,
  detail  text NOT NULL DEFAULT ''
);
CREATE INDEX worker_history_by_attempt ON worker_history (run_id, task_id, attempt);
-- A worker's attempt that ends frees a slot of its pool: workers waiting for one are told.
CREATE FUNCTION kiln_slot_freed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('kiln_dispatch', NEW.pool);
  RETURN NULL;
END $$;
CREATE TRIGGER attempts_slot_freed AFTER UPDATE OF state ON attempts FOR EACH ROW
  WHEN (OLD.state = 'running' AND NEW.state <> 'running' AND NEW.worker IS NOT NULL)
  EXECUTE FUNCTION kiln_slot_freed();
ALTER TABLE daemons DROP CONSTRAINT daemons_kind_check,
  ADD CONSTRAINT daemons_kind_check CHECK (kind IN ('daemon', 'supervisor', 'worker'));
ALTER TABLE daemons ADD COLUMN pools text[];
ALTER TABLE daemons ADD COLUMN slots int;
)sql";

// Migration 13, the leader of the daemons on one database:
// - leader: one row, the leader lease. The daemon named `holder` fires schedules and takes over
//   the runs of daemons whose lease expired while expires_at is ahead of the database's clock;
//   `term` grows each time the lease changes hands or is taken again after it lapsed, and every
//   fire and takeover commits only while its term is still the live one.
// - leader_terms: one row per term, when it began and who held it (for operators and tests).
// - deleted_runs: the runs the leader's retention sweep deleted, so that every daemon removes its
//   own folders of them (and only of them); pruned with the events.
constexpr std::string_view kLeaderSchema = R"sql(
CREATE TABLE leader (
  id         boolean PRIMARY KEY DEFAULT true CHECK (id),
  holder     text NOT NULL,
  term       bigint NOT NULL,
  since      timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE TABLE leader_terms (
  term     bigint PRIMARY KEY,
  holder   text NOT NULL,
  began_at timestamptz NOT NULL
);
CREATE TABLE deleted_runs (
  run_id     bigint PRIMARY KEY,
  pipeline   text NOT NULL,
  deleted_at timestamptz NOT NULL DEFAULT now()
);
)sql";

// Migration 14, the workers' hot path:
// - attempts handed to workers in the commit of their start (Database::CommitBatches writes them
//   claimable): the insert of one tells the workers of its pool, as its end does.
// - kiln_claim: a worker's claim (Database::Claim) as one call, one round trip instead of seven.
//   Refuses with SQLSTATE KL001 when the worker's supervisor's lease has lapsed or its row is
//   another host's. Pools with slots are locked in name order (no deadlock between claimers, nor
//   with the daemons' writes of slots) and what they have left is summed under the lock, so two
//   claims never both take the last slot; then, pool by pool in the order asked, candidates are
//   taken in priority and hand-out order while they fit (one that does not is passed over: a
//   smaller one behind it may).
constexpr std::string_view kHandoutSchema = R"sql(
CREATE TRIGGER attempts_handed_out AFTER INSERT ON attempts FOR EACH ROW
  WHEN (NEW.lease_owner = '(dispatched)') EXECUTE FUNCTION kiln_slot_freed();
CREATE FUNCTION kiln_claim(p_worker text, p_supervisor text, p_host text, p_pools text[],
                           p_slots int)
RETURNS TABLE (c_run_id bigint, c_task_id text, c_attempt int, c_launch bytea, c_slots int,
               c_pool text)
LANGUAGE plpgsql AS $$
DECLARE
  v_free bigint := p_slots;
  v_room jsonb := '{}';
  v_pool text;
  v_left bigint;
  v_cand record;
  v_runs bigint[] := '{}';
  v_tasks text[] := '{}';
  v_attempts int[] := '{}';
BEGIN
  IF NOT EXISTS (SELECT FROM daemons s, daemons w WHERE s.name = p_supervisor
                 AND s.expires_at > now() AND w.name = p_worker AND w.hostname = p_host) THEN
    RAISE EXCEPTION 'claim refused' USING ERRCODE = 'KL001';
  END IF;
  FOR v_pool, v_left IN SELECT pl.name, pl.slots FROM pools pl WHERE pl.name = ANY(p_pools)
                        ORDER BY pl.name FOR UPDATE LOOP
    v_room := v_room || jsonb_build_object(v_pool, v_left - coalesce(
      (SELECT sum(a.slots) FROM attempts a WHERE a.worker IS NOT NULL AND a.state = 'running'
       AND a.pool = v_pool), 0));
  END LOOP;
  FOREACH v_pool IN ARRAY p_pools LOOP
    v_left := v_free;
    IF v_room ? v_pool THEN
      v_left := least(v_left, (v_room->>v_pool)::bigint);
    END IF;
    CONTINUE WHEN v_left <= 0;
    FOR v_cand IN
      SELECT a.run_id, a.task_id, a.attempt, a.slots FROM attempts a
      JOIN task_instances t ON t.run_id = a.run_id AND t.task_id = a.task_id
        AND t.state = 'running' AND t.attempt = a.attempt
      JOIN runs r ON r.id = a.run_id AND r.cancel_requested_at IS NULL
      WHERE a.lease_owner = '(dispatched)' AND a.state = 'running' AND a.pool = v_pool
        AND a.slots <= v_left
      ORDER BY a.priority DESC, a.dispatched_at, a.run_id, a.task_id LIMIT v_left
      FOR UPDATE OF a SKIP LOCKED
    LOOP
      CONTINUE WHEN v_cand.slots > v_left;
      v_left := v_left - v_cand.slots;
      v_free := v_free - v_cand.slots;
      v_runs := v_runs || v_cand.run_id;
      v_tasks := v_tasks || v_cand.task_id;
      v_attempts := v_attempts || v_cand.attempt;
    END LOOP;
  END LOOP;
  RETURN QUERY
  WITH m AS (
    SELECT * FROM unnest(v_runs, v_tasks, v_attempts) WITH ORDINALITY
      AS m(run_id, task_id, attempt, k)),
  u AS (
    UPDATE attempts a SET lease_owner = p_supervisor, worker = p_worker,
      claimed_at = clock_timestamp() FROM m
    WHERE a.run_id = m.run_id AND a.task_id = m.task_id AND a.attempt = m.attempt
    RETURNING a.run_id, a.task_id, a.attempt, a.launch, a.slots, a.pool, m.k),
  h AS (
    INSERT INTO worker_history (worker, kind, run_id, task_id, attempt)
    SELECT p_worker, 'claim', u.run_id, u.task_id, u.attempt FROM u ORDER BY u.k)
  SELECT u.run_id, u.task_id, u.attempt, u.launch, u.slots, u.pool FROM u ORDER BY u.k;
END $$;
)sql";

// Migration 15, the task row of an update found by its key: task_instances_active was on
// (run_id) only, and an update of one task (`WHERE run_id = $1 AND task_id = $2 AND state =
// 'running' ...`, CommitBatches' end statement, a claim's check of the task row) could take it
// instead of the primary key whenever the statistics were older than the run, the common case
// for a run just created: the update then read every active task row of its run (922 of a
// run of 1,000, measured), once per transition. On (run_id, task_id), either index finds the
// row directly; a run's active tasks are still one range of it.
constexpr std::string_view kTaskKeySchema = R"sql(
DROP INDEX task_instances_active;
CREATE INDEX task_instances_active ON task_instances (run_id, task_id)
  WHERE state IN ('pending', 'queued', 'running', 'up_for_retry', 'waiting');
)sql";

// What each daemon loaded from its pipelines folder, and from which file: a file that is broken
// when a daemon starts runs the version last loaded (store/database_versions.cc). loaded_at
// becomes the time of the last load; the file stays NULL for versions only runs wrote.
constexpr std::string_view kLoadedSchema = R"sql(
ALTER TABLE pipeline_versions ADD COLUMN file text;
)sql";

constexpr Migration kMigrations[] = {
    {1, "initial schema", kInitialSchema},
    {2, "api: event pipelines, pause state", kApiSchema},
    {3, "schedules: fire cursors, skipped fires, completion triggers", kScheduleSchema},
    {4, "backfills", kBackfillSchema},
    {5, "leases, recovery and retention", kLeaseSchema},
    {6, "results of attempts, artifacts", kResultsSchema},
    {7, "model registry", kRegistrySchema},
    {8, "approvals: the waiting state", kWaitingSchema},
    {9, "result cache", kCacheSchema},
    {10, "notifications", kNotifySchema},
    {11, "for_each instances", kForEachSchema},
    {12, "remote workers", kWorkerSchema},
    {13, "the leader of the daemons", kLeaderSchema},
    {14, "the workers' hot path", kHandoutSchema},
    {15, "the task row of an update found by its key", kTaskKeySchema},
    {16, "the pipeline versions each daemon loaded", kLoadedSchema},
};

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

}  // namespace kiln::store
