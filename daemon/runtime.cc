#include "daemon/runtime.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "daemon/supervision.h"
#include "plugins/cache.h"
#include "plugins/collect.h"
#include "plugins/registry.h"

namespace kiln::daemon {

namespace {
constexpr const char* kDefaultTaskUser = "kiln-task";
}  // namespace

Result<DatabaseHandle> OpenDatabase(const config::DaemonConfig& config) {
  DatabaseHandle handle;
  if (config.database_url.empty()) {
    store::EmbeddedOptions options;
    options.data_dir = std::filesystem::absolute(config.data_dir);
    options.pg_bin_dir = config.pg_bin_dir;
    auto embedded = store::EmbeddedPostgres::Start(options);
    if (!embedded.ok()) return embedded.status();
    handle.embedded = std::move(embedded).value();
    handle.url = handle.embedded->url();
    auto db = handle.embedded->ConnectAndMigrate();
    if (!db.ok()) return db.status();
    handle.db = std::move(db).value();
    return handle;
  }
  handle.url = config.database_url;
  auto db = store::Database::Connect(handle.url);
  if (!db.ok()) return db.status();
  handle.db = std::move(db).value();
  if (Status s = handle.db->Migrate(); !s.ok()) return s;
  return handle;
}

std::vector<std::pair<std::string, std::string>> BaseTaskEnv() {
  std::vector<std::pair<std::string, std::string>> env;
  for (const char* name : {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR"}) {
    if (const char* v = std::getenv(name)) env.emplace_back(name, v);
  }
  if (!std::getenv("PATH")) {
    env.emplace_back("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  }
  return env;
}

namespace {

Result<Identity> TaskUserOnly(const config::DaemonConfig& config, bool daemon) {
  Identity self = CurrentIdentity();
  if (self.uid != 0) {
    if (config.run_as && *config.run_as != self.name) {
      return Status::Error("executor.run_as = \"" + *config.run_as + "\": kiln runs as '" +
                           self.name +
                           "', and only root can start tasks as another user; remove run_as or "
                           "start kiln as root");
    }
    return self;
  }
  const std::string name = config.run_as.value_or(daemon ? kDefaultTaskUser : "root");
  if (name == "root") return self;
  auto user = LookupIdentity(name);
  if (!user.ok()) {
    if (config.run_as) return Status::Error("executor.run_as: no user named '" + name + "'");
    return Status::Error(
        "kiln serve runs tasks as the unprivileged user '" + name +
        "', which does not exist; create it (scripts/setup.sh does, or: useradd --system "
        "--user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin " +
        name + "), or set executor.run_as (\"root\" runs tasks as root)");
  }
  if (user->uid == 0) return self;
  return user;
}

}  // namespace

Result<TaskUsers> TaskUser(const config::DaemonConfig& config, bool daemon) {
  auto user = TaskUserOnly(config, daemon);
  if (!user.ok()) return user.status();
  TaskUsers users{std::move(user).value(), {}};
  if (!users.user.switch_user) {
    if (config.run_uids && config.run_uids->count > 0) {
      return Status::Error(
          "executor.run_uids: tasks take user ids of their own only when kiln runs as root and "
          "executor.run_as names an unprivileged user");
    }
    return users;
  }
  users.uids = config.run_uids.value_or(daemon ? kDefaultRunUids : UidRange{});
  if (users.uids.count > 0) {
    if (std::string holder = FirstHolder(users.uids); !holder.empty()) {
      const uint64_t last = uint64_t{users.uids.first} + users.uids.count - 1;
      return Status::Error("executor.run_uids: " + std::to_string(users.uids.first) + "-" +
                           std::to_string(last) + " holds the " + holder +
                           "; choose a range no user or group of this host has (\"\" runs every "
                           "task as '" +
                           users.user.name + "')");
    }
  }
  return users;
}

Status PrepareRunsFolder(const std::filesystem::path& runs_dir, const TaskUsers& users) {
  const Identity task_user = RunIdentity(users.user, users.uids, 0);
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(runs_dir, ec);
  if (ec) return Status::Error("run folders " + runs_dir.string() + ": " + ec.message());
  // Passable, not listable: a task reaches its own run folder (0700, its own) by its path.
  auto passable = [](const fs::path& dir) {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid() &&
        (st.st_mode & 07777) != 0711) {
      ::chmod(dir.c_str(), 0711);
    }
  };
  passable(runs_dir);
  for (const auto& entry : fs::directory_iterator(runs_dir, ec)) passable(entry.path());
  auto blocked = FirstUnsearchable(FoldersDownTo(runs_dir.string()), task_user);
  if (!blocked.ok()) return blocked.status();
  if (!*blocked) return Status::Ok();
  const std::string& dir = **blocked;
  return Status::Error("tasks run as user '" + task_user.name + "', which cannot enter folder " +
                       dir + "; allow it (chmod o+x " + dir +
                       "), choose a data folder it can reach, or set executor.run_as");
}

// A gate starts with its model's champion in its keys ("champion": {"version", "metrics"}).
dag::Value WithChampion(dag::Value keys, const ChampionCache& champions) {
  const dag::Value* model = keys.Find("model");
  if (model == nullptr || model->type != dag::Value::Type::kString) return keys;
  auto champion = champions.Get(model->string);
  if (!champion) return keys;
  dag::Value version;
  version.type = dag::Value::Type::kInteger;
  version.key = "version";
  version.integer = champion->version;
  dag::Value metrics;
  metrics.type = dag::Value::Type::kTable;
  metrics.key = "metrics";
  for (const auto& [name, number] : champion->metrics) {
    dag::Value m;
    m.type = dag::Value::Type::kFloat;
    m.key = name;
    m.number = number;
    metrics.items.push_back(std::move(m));
  }
  dag::Value table;
  table.type = dag::Value::Type::kTable;
  table.key = "champion";
  table.items = {std::move(version), std::move(metrics)};
  keys.items.push_back(std::move(table));
  return keys;
}

dag::SecretNames SecretNamesOf(const config::DaemonConfig& config) {
  dag::SecretNames names;
  for (const auto& [name, ref] : config.secrets) names.insert(name);
  return names;
}

scheduler::SchedulerOptions MakeSchedulerOptions(const config::DaemonConfig& config,
                                                 const std::string& supervisor,
                                                 std::shared_ptr<const ChampionCache> champions) {
  scheduler::SchedulerOptions options;
  options.pools = config.pools;
  options.max_parallel_tasks = config.max_parallel_tasks;
  options.lease_owner = supervisor;
  options.logs_dir = std::filesystem::absolute(config.data_dir) / "logs";
  options.runs_dir = std::filesystem::absolute(config.data_dir) / "runs";
  options.base_env = BaseTaskEnv();
  options.secret = config::SecretReader(config.secrets);
  options.kind_argv = [kiln = SelfExe(), champions](std::string_view kind, const dag::Value& keys) {
    if (kind == "gate" && champions) {
      return plugins::Builtins().Argv(kind, WithChampion(keys, *champions), kiln);
    }
    return plugins::Builtins().Argv(kind, keys, kiln);
  };
  options.collect_argv =
      [kiln = SelfExe(), allow = config.allow_absolute_paths](
          const scheduler::FilesToCollect& files) -> Result<std::vector<std::string>> {
    plugins::CollectSpec spec;
    spec.inputs = files.inputs;
    spec.outputs = files.outputs;
    spec.metrics = files.metrics;
    spec.report = files.report.empty()
                      ? std::string()
                      : std::filesystem::absolute(files.report).lexically_normal().string();
    spec.pipeline_dir = files.pipeline_dir.string();
    spec.run_dir = std::filesystem::absolute(files.run_dir).lexically_normal().string();
    spec.allow_absolute = allow;
    spec.cache_report = files.cache_report;
    spec.cache_store = files.cache_store.string();
    std::string json = plugins::CollectSpecJson(spec);
    // One argument of execve is at most 128 KiB.
    if (json.size() >= 128 * 1024) {
      return Status::Error(ErrorCode::kInvalidArgument,
                           "its inputs, outputs and metrics paths take " +
                               std::to_string(json.size()) +
                               " bytes once rendered; at most 131071 fit");
    }
    return std::vector<std::string>{kiln, "task", "collect", "--options", std::move(json)};
  };
  options.cache_dir = std::filesystem::absolute(config.data_dir) / "cache";
  options.cache_argv =
      [kiln = SelfExe(), allow = config.allow_absolute_paths](
          const scheduler::CacheLaunch& launch) -> Result<std::vector<std::string>> {
    plugins::CacheSpec spec;
    spec.files.inputs = launch.files.inputs;
    spec.files.outputs = launch.files.outputs;
    spec.files.pipeline_dir = launch.files.pipeline_dir.string();
    spec.files.run_dir =
        std::filesystem::absolute(launch.files.run_dir).lexically_normal().string();
    spec.files.allow_absolute = allow;
    spec.files.cache_store = launch.files.cache_store.string();
    spec.report = launch.files.cache_report;
    spec.candidates = plugins::CandidatesFromResults(launch.candidates);
    spec.argv = launch.argv;
    // One argument of execve is at most 128 KiB: the oldest candidates give way, and a task
    // whose own program and files do not fit beside none runs as itself (its outputs are still
    // kept, so that a later, shorter spec may reuse them).
    std::string json = plugins::CacheSpecJson(spec);
    while (json.size() >= 128 * 1024 && !spec.candidates.empty()) {
      spec.candidates.pop_back();
      json = plugins::CacheSpecJson(spec);
    }
    if (json.size() >= 128 * 1024) return launch.argv;
    return std::vector<std::string>{kiln, "task", "cache", "--options", std::move(json)};
  };
  return options;
}

Status PrepareCacheFolder(const std::filesystem::path& cache_dir, const TaskUsers& users) {
  std::error_code ec;
  std::filesystem::create_directories(cache_dir, ec);
  if (ec) return Status::Error("the result cache " + cache_dir.string() + ": " + ec.message());
  // Tasks of other users keep outputs in it and read them back by their hash: writable by all,
  // not listable, and nobody removes or replaces another's file (sticky). A file is named by the
  // hash of its content, which a restore checks, so a planted one is never used.
  const mode_t mode = users.user.switch_user ? 01733 : 0700;
  if (::chmod(cache_dir.c_str(), mode) != 0) {
    return Status::Error("the result cache " + cache_dir.string() + ": cannot set its mode");
  }
  return Status::Ok();
}

std::string DaemonName(const std::filesystem::path& data_dir) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  std::error_code ec;
  auto absolute = std::filesystem::absolute(data_dir, ec);
  return std::string(host) + ":" + (ec ? data_dir : absolute).lexically_normal().string();
}

std::string SupervisorName(const std::string& daemon) { return daemon + "/supervisor"; }

std::string ForegroundName(const std::filesystem::path& data_dir) {
  return DaemonName(data_dir) + ":run:" + std::to_string(getpid());
}

store::NewRun MakeNewRun(const dag::Pipeline& pipeline, const dag::ParamList& params,
                         const std::string& trigger, Instant now) {
  store::NewRun run;
  run.pipeline = pipeline.spec.name;
  run.version_hash = pipeline.spec.content_hash;
  run.source = pipeline.spec.source;
  run.trigger = trigger;
  run.logical_date = now;
  run.data_interval_start = now;
  run.data_interval_end = now;
  run.params = params;
  for (const auto& task : pipeline.spec.tasks) {
    run.tasks.push_back(store::NewRun::Task{task.id, task.pool, task.priority});
  }
  return run;
}

}  // namespace kiln::daemon
