// The private PostgreSQL cluster kiln starts when no database URL is configured: created under
// the data folder on first use, reachable only through a Unix socket inside it, stopped on exit.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <string>

#include "common/status.h"
#include "store/database.h"

namespace kiln {
struct Identity;  // common/users.h
}  // namespace kiln

namespace kiln::store {

struct EmbeddedOptions {
  // The cluster lives in <data_dir>/postgres (mode 0700), its log in <data_dir>/postgres.log.
  // Created when missing. The path must not contain " ` $ \ or newlines (pg_ctl hands it to
  // /bin/sh) and must be short enough for a Unix socket path (about 85 characters).
  std::filesystem::path data_dir;
  // Folder with initdb, pg_ctl and postgres. Empty: /usr/lib/postgresql/<major>/bin for the
  // cluster's major version, or the newest one containing initdb for a new cluster.
  std::filesystem::path pg_bin_dir;
  // PostgreSQL refuses to run as root. Empty: when kiln runs as root, the user 'kiln' if it
  // exists, else 'postgres' (created by Debian's package); otherwise kiln's own user. A named
  // user other than kiln's own requires running as root.
  std::string run_as_user;
};

// Thread safety: none needed; Start and Stop are called by the composition root. Start and Stop
// run initdb, pg_ctl and psql as child processes and reap them with waitpid(pid), so no SIGCHLD
// handler may reap all children while they run. The server is a child too (reaped by Stop).
class EmbeddedPostgres {
 public:
  // initdb on first use (UTF8, locale C.UTF-8, superuser 'postgres', no TCP listener), then the
  // server (store/postmaster.h), then, once per cluster (through psql, as PostgreSQL's user), the
  // role 'kiln' that kiln connects as, which is not a superuser and cannot create roles or
  // databases, and its database 'kiln'.
  // Access is rewritten at every start: peer authentication over a socket in a 0700 folder of
  // PostgreSQL's user, where only that user and kiln's may connect (kiln's only as 'kiln'). A
  // cluster still running on the folder (left by a kiln that crashed) is reused and reloaded; one
  // made by an earlier kiln, whose superuser was 'kiln', gains 'postgres' and 'kiln' is demoted.
  // Errors are one line that names the folder, the user or the program, and what to do.
  static Result<std::unique_ptr<EmbeddedPostgres>> Start(const EmbeddedOptions& options);

  // Connects to kiln's database and migrates it. When that fails on a cluster whose set-up Start
  // skipped (recorded as done at an earlier start), the set-up is made again and the connection
  // tried once more: kiln's role or database dropped since, or tables made by the superuser, are
  // then kiln's again. The error is the first attempt's when the set-up was not skipped, or the
  // second's.
  Result<std::unique_ptr<Database>> ConnectAndMigrate();

  // Stops the cluster if still running; errors are logged.
  ~EmbeddedPostgres();
  EmbeddedPostgres(const EmbeddedPostgres&) = delete;
  EmbeddedPostgres& operator=(const EmbeddedPostgres&) = delete;

  // A fast shutdown, as pg_ctl stop -m fast (sessions are disconnected, no crash recovery
  // needed on the next start), waiting for the server's exit. Idempotent.
  Status Stop();

  // Stops a cluster left running on options.data_dir by a daemon that has gone (its supervisor
  // calls this once it has nothing left to report), unless another kiln process uses it.
  // `users` is the caller's descriptor from HoldUse, or -1. Nothing to stop is not an error.
  static Status StopLeftRunning(const EmbeddedOptions& options, int users = -1);

  // Every kiln process that uses a cluster holds a shared lock on <data_dir>/postgres.users
  // (Start takes it; a supervisor, which connects without Start, takes it here), and the server
  // is stopped only by one that gets it exclusively: a `kiln run` beside a daemon on the same
  // data folder, or a daemon's supervisor still reporting, never has it stopped under them. The
  // descriptor (close-on-exec) holds the lock until closed.
  static Result<int> HoldUse(const std::filesystem::path& data_dir);

  // Leaves the cluster running when this object goes (the daemon stops with runs left to its
  // supervisor, which stops the cluster when it is done).
  void KeepRunning() { running_ = false; }

  // libpq URI of the database 'kiln' through the socket, e.g.
  // "postgresql:///kiln?host=%2Fvar%2Flib%2Fkiln%2Fpostgres&user=kiln".
  const std::string& url() const { return url_; }
  const std::filesystem::path& cluster_dir() const { return cluster_dir_; }
  // The user PostgreSQL runs as.
  uid_t uid() const;

 private:
  EmbeddedPostgres();
  // The role, the database and the ownership of its tables (through psql, as PostgreSQL's
  // user), recorded as done in the cluster folder.
  Status SetUp();
  // Stop's shutdown, once this is the cluster's last user.
  Status ShutDownServer();

  std::filesystem::path cluster_dir_;
  std::filesystem::path bin_dir_;
  std::unique_ptr<Identity> user_;  // who runs PostgreSQL
  std::string url_;
  bool running_ = false;
  bool set_up_skipped_ = false;  // Start found the set-up recorded as done
  pid_t server_ = 0;  // the server when this process started it (its child), until stopped
  int users_ = -1;    // HoldUse's descriptor
};

}  // namespace kiln::store
