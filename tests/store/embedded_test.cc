#include "store/embedded.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "store/database.h"
#include "store/subprocess.h"
#include "tests/store/test_support.h"

using namespace kiln;
using namespace kiln::store;
namespace fs = std::filesystem;

namespace {

// A folder under /tmp, removed at the end (the cluster in it must be stopped by then).
struct TempDir {
  explicit TempDir(mode_t mode) {
    char tmpl[] = "/tmp/kiln-emb-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
    chmod(tmpl, mode);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

// A lock file as a server writes it, naming `pid`, owned as the cluster folder is.
void WriteLockFile(const fs::path& cluster, pid_t pid, const std::string& status) {
  const fs::path file = cluster / "postmaster.pid";
  {
    std::ofstream lock(file);
    lock << pid << "\n"
         << cluster.string() << "\n"
         << ::time(nullptr) - 3600 << "\n5432\n"
         << cluster.string() << "\n\n0 0\n"
         << status << "\n";
  }
  struct stat st {};
  REQUIRE(stat(cluster.c_str(), &st) == 0);
  REQUIRE(chown(file.c_str(), st.st_uid, st.st_gid) == 0);
}

std::string Query(const std::string& url, const std::string& sql) {
  pqxx::connection conn(url);
  return pqxx::nontransaction(conn).exec1(sql)[0].c_str();
}

}  // namespace

TEST_CASE("EmbeddedPostgres starts a private cluster and serves kiln's database") {
  TempDir tmp(0755);
  EmbeddedOptions options;
  options.data_dir = tmp.path / "data";
  auto pg = EmbeddedPostgres::Start(options);
  REQUIRE(pg.ok());
  const fs::path cluster = tmp.path / "data" / "postgres";
  CHECK((*pg)->cluster_dir() == cluster);
  CHECK((*pg)->url() == "postgresql:///kiln?host=" + std::string("%2Ftmp%2F") +
                            tmp.path.filename().string() + "%2Fdata%2Fpostgres&user=kiln");

  auto db = Database::Connect((*pg)->url());
  REQUIRE(db.ok());
  REQUIRE((*db)->Migrate().ok());
  CHECK(Query((*pg)->url(), "SHOW listen_addresses") == "");
  CHECK(Query((*pg)->url(), "SHOW synchronous_commit") == "on");
  CHECK(Query((*pg)->url(), "SELECT current_database() || ' ' || current_user") == "kiln kiln");
  // kiln's role may do what kiln needs and nothing more.
  CHECK(Query((*pg)->url(),
              "SELECT rolsuper::text || rolcreaterole::text || rolcreatedb::text FROM pg_roles "
              "WHERE rolname = current_user") == "falsefalsefalse");
  CHECK_THROWS_WITH(Query((*pg)->url(), "CREATE ROLE intruder"),
                    Catch::Contains("permission denied to create role"));
  CHECK_THROWS_WITH(
      Query((*pg)->url(), "COPY (SELECT 1) TO PROGRAM 'id'"),
      Catch::Contains(
          "must be superuser or have privileges of the pg_execute_server_program role"));
  db->reset();

  struct stat st {};
  REQUIRE(stat(cluster.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  if (geteuid() == 0) {
    auto postgres = LookupIdentity("postgres");
    REQUIRE(postgres.ok());
    CHECK(st.st_uid == postgres->uid);
  }
  CHECK(fs::exists(tmp.path / "data" / "postgres.log"));
  // Bootstrapped once: later starts skip the role and database set-up.
  {
    std::ifstream marker(cluster / "kiln-bootstrap");
    std::string line;
    CHECK(std::getline(marker, line));
    CHECK(line == "1");
  }
  if (geteuid() == 0) {
    // Only kiln's user, and only as 'kiln': not as the superuser, and nobody else at all (the
    // socket's folder is closed to them before authentication is even asked for).
    const std::string superuser =
        std::string((*pg)->url()).replace((*pg)->url().find("user=kiln"), 9, "user=postgres");
    CHECK_THROWS_WITH(Query(superuser, "SELECT 1"),
                      Catch::Contains("Peer authentication failed for user \"postgres\""));
    auto nobody = LookupIdentity("nobody");
    REQUIRE(nobody.ok());
    for (const char* role : {"kiln", "postgres"}) {
      auto psql = RunProgram({"/usr/bin/psql", "-X", "-h", cluster.string(), "-U", role, "-d",
                              "kiln", "-c", "SELECT 1"},
                             {"PATH=/usr/bin:/bin"}, *nobody);
      REQUIRE(psql.ok());
      CHECK(psql->exit_code == 2);
      CHECK_THAT(psql->output, Catch::Contains("/.s.PGSQL.5432\" failed: Permission denied"));
    }
  }

  SECTION("a server left running on the folder is reused") {
    auto again = EmbeddedPostgres::Start(options);
    REQUIRE(again.ok());
    CHECK((*again)->url() == (*pg)->url());
    CHECK((*again)->Stop().ok());
    CHECK((*pg)->Stop().ok());  // already stopped by the other one: fine
  }
  SECTION("a server left running by a daemon that has gone is stopped by StopLeftRunning") {
    const std::string url = (*pg)->url();
    (*pg)->KeepRunning();
    pg->reset();
    CHECK(Query(url, "SELECT 1") == "1");
    REQUIRE(EmbeddedPostgres::StopLeftRunning(options).ok());
    CHECK_FALSE(fs::exists(cluster / "postmaster.pid"));
    CHECK_THROWS(Query(url, "SELECT 1"));
    CHECK(EmbeddedPostgres::StopLeftRunning(options).ok());  // nothing to stop: fine
  }
  SECTION("a lock file left naming a process that is not the server: nothing is signalled") {
    REQUIRE((*pg)->Stop().ok());
    // A pid reused since a crash: a process of PostgreSQL's user, but not `postgres -D
    // <cluster>`. Neither stopping nor starting may signal it (SIGINT, SIGHUP).
    struct stat owner {};
    REQUIRE(stat(cluster.c_str(), &owner) == 0);
    const pid_t other = fork();
    REQUIRE(other >= 0);
    if (other == 0) {
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGHUP, SIG_DFL);
      if (setgid(owner.st_gid) != 0 || setuid(owner.st_uid) != 0) _exit(126);
      execl("/bin/sleep", "sleep", "30", nullptr);
      _exit(127);
    }
    WriteLockFile(cluster, other, "ready");
    CHECK(EmbeddedPostgres::StopLeftRunning(options).ok());
    int status = 0;
    CHECK(waitpid(other, &status, WNOHANG) == 0);  // still running
    // Started over that file: it is removed, the new server writes its own, and only that one
    // counts as ready.
    auto again = EmbeddedPostgres::Start(options);
    REQUIRE(again.ok());
    CHECK(Query((*again)->url(), "SELECT 1") == "1");
    CHECK(waitpid(other, &status, WNOHANG) == 0);
    CHECK((*again)->Stop().ok());
    CHECK_FALSE(fs::exists(cluster / "postmaster.pid"));
    CHECK(waitpid(other, &status, WNOHANG) == 0);
    ::kill(other, SIGKILL);
    REQUIRE(waitpid(other, &status, 0) == other);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
  }
  SECTION("a stopped cluster starts again with its data") {
    // The server is this process's child: stopped, it is reaped (no zombie answers signal 0).
    std::string server_pid;
    {
      std::ifstream lock(cluster / "postmaster.pid");
      REQUIRE(std::getline(lock, server_pid));
    }
    REQUIRE((*pg)->Stop().ok());
    errno = 0;
    CHECK(::kill(std::stoi(server_pid), 0) == -1);
    CHECK(errno == ESRCH);
    CHECK((*pg)->Stop().ok());
    auto restarted = EmbeddedPostgres::Start(options);
    REQUIRE(restarted.ok());
    CHECK(Query((*restarted)->url(), "SELECT max(version) FROM schema_migrations") == "16");
  }
}

TEST_CASE("EmbeddedPostgres sets kiln's role and database up again when they were dropped") {
  TempDir tmp(0755);
  EmbeddedOptions options;
  options.data_dir = tmp.path / "data";
  const fs::path cluster = tmp.path / "data" / "postgres";
  {
    auto pg = EmbeddedPostgres::Start(options);
    REQUIRE(pg.ok());
    auto db = (*pg)->ConnectAndMigrate();
    REQUIRE(db.ok());
    db->reset();
    // The superuser drops what kiln connects to, as PostgreSQL's user through psql.
    struct stat st {};
    REQUIRE(stat(cluster.c_str(), &st) == 0);
    auto pg_user = LookupIdentity(getpwuid(st.st_uid)->pw_name);
    REQUIRE(pg_user.ok());
    auto dropped = RunProgram(
        {"/usr/bin/psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", cluster.string(), "-U", "postgres",
         "-d", "postgres", "-c", "DROP DATABASE kiln", "-c", "DROP ROLE kiln"},
        {"PATH=/usr/bin:/bin"}, *pg_user);
    REQUIRE(dropped.ok());
    INFO(dropped->output);
    REQUIRE(dropped->exit_code == 0);
    REQUIRE((*pg)->Stop().ok());
  }
  // The set-up is recorded as done, so the next start skips it; the connection fails, and the
  // set-up is made again.
  auto pg = EmbeddedPostgres::Start(options);
  REQUIRE(pg.ok());
  auto db = (*pg)->ConnectAndMigrate();
  INFO((db.ok() ? "" : db.status().message()));
  REQUIRE(db.ok());
  CHECK(Query((*pg)->url(), "SELECT current_database() || ' ' || current_user") == "kiln kiln");
  CHECK(Query((*pg)->url(), "SELECT max(version) FROM schema_migrations") == "16");
  CHECK(Query((*pg)->url(), "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'kiln'") ==
        "false");
  db->reset();
  REQUIRE((*pg)->Stop().ok());
}

TEST_CASE("EmbeddedPostgres stops its server only when the last kiln process that uses it goes") {
  TempDir tmp(0755);
  EmbeddedOptions options;
  options.data_dir = tmp.path / "data";
  const fs::path pid_file = tmp.path / "data" / "postgres" / "postmaster.pid";
  // A daemon, and a `kiln run` on the same data folder (separate opens lock as processes do).
  auto daemon = EmbeddedPostgres::Start(options);
  REQUIRE(daemon.ok());
  REQUIRE((*daemon)->ConnectAndMigrate().ok());
  {
    auto run = EmbeddedPostgres::Start(options);
    REQUIRE(run.ok());
    REQUIRE((*run)->Stop().ok());  // as at the end of `kiln run`: the daemon still uses it
  }
  CHECK(fs::exists(pid_file));
  CHECK(Query((*daemon)->url(), "SELECT 1") == "1");
  // The daemon goes while its supervisor still reports: it leaves it running, and so does a
  // `kiln run` that ends meanwhile.
  auto supervisor = EmbeddedPostgres::HoldUse(options.data_dir);
  REQUIRE(supervisor.ok());
  daemon->reset();
  {
    auto run = EmbeddedPostgres::Start(options);
    REQUIRE(run.ok());
  }
  CHECK(fs::exists(pid_file));
  CHECK(Query(EmbeddedPostgres::Start(options).value()->url(), "SELECT 2") == "2");
  // The supervisor, the last to use it, stops it.
  REQUIRE(EmbeddedPostgres::StopLeftRunning(options, *supervisor).ok());
  close(*supervisor);
  CHECK_FALSE(fs::exists(pid_file));
}

TEST_CASE("EmbeddedPostgres says why its server did not start, from the server's log") {
  TempDir tmp(0755);
  EmbeddedOptions options;
  options.data_dir = tmp.path / "data";
  {
    auto pg = EmbeddedPostgres::Start(options);
    REQUIRE(pg.ok());
  }
  const fs::path cluster = tmp.path / "data" / "postgres";
  const fs::path conf = cluster / "postgresql.conf";
  {
    std::ofstream out(conf, std::ios::app);
    out << "shared_buffers = 'plenty'\n";
  }
  auto failed = EmbeddedPostgres::Start(options);
  REQUIRE_FALSE(failed.ok());
  CHECK_THAT(failed.message(),
             Catch::StartsWith("embedded PostgreSQL did not start in " + cluster.string() + ": "));
  CHECK_THAT(failed.message(), Catch::Contains("FATAL: configuration file \"" + conf.string() +
                                               "\" contains errors (see " +
                                               (tmp.path / "data").string() + "/postgres.log)"));
  CHECK_FALSE(fs::exists(cluster / "postmaster.pid"));
}

TEST_CASE("EmbeddedPostgres says which folder PostgreSQL's user cannot enter") {
  if (geteuid() != 0) return;  // only root switches to an unprivileged user
  TempDir tmp(0700);
  EmbeddedOptions options;
  options.data_dir = tmp.path / "data";
  auto pg = EmbeddedPostgres::Start(options);
  REQUIRE_FALSE(pg.ok());
  const std::string dir = tmp.path.string();
  CHECK(pg.message() == "embedded PostgreSQL runs as user 'postgres', which cannot enter folder " +
                            dir + "; allow it (chmod o+x " + dir +
                            "), choose a data folder it can reach, or set database.url");
}

TEST_CASE("EmbeddedPostgres refuses data folders it cannot use") {
  EmbeddedOptions options;
  options.data_dir = "/tmp/" + std::string(90, 'x');
  auto long_path = EmbeddedPostgres::Start(options);
  REQUIRE_FALSE(long_path.ok());
  CHECK(long_path.message() == "data folder '/tmp/" + std::string(90, 'x') +
                                   "' is too long for PostgreSQL's Unix socket (/tmp/" +
                                   std::string(90, 'x') +
                                   "/postgres/.s.PGSQL.5432 has 118 characters, at most 107); "
                                   "choose a shorter data folder or set database.url");
  CHECK_FALSE(fs::exists(options.data_dir));

  options.data_dir = "/tmp/kiln-$HOME";
  auto shell = EmbeddedPostgres::Start(options);
  REQUIRE_FALSE(shell.ok());
  CHECK(shell.message() ==
        "data folder '/tmp/kiln-$HOME': PostgreSQL's pg_ctl cannot use a path containing \" ` $ "
        "\\ or a newline; choose another data folder or set database.url");

  if (geteuid() == 0) {
    options.data_dir = "/tmp/kiln-never-created";
    options.run_as_user = "no-such-user-kiln";
    auto user = EmbeddedPostgres::Start(options);
    REQUIRE_FALSE(user.ok());
    CHECK(user.message() ==
          "embedded PostgreSQL refuses to run as root and there is no unprivileged user "
          "'no-such-user-kiln' to run it as; create one (useradd --system kiln), run kiln as "
          "another user, or set database.url");
  }
}

TEST_CASE("EmbeddedPostgres takes over a cluster whose superuser was kiln, keeping its data") {
  if (geteuid() != 0) return;  // the cluster is made as PostgreSQL's user, which needs root
  TempDir tmp(0755);
  const fs::path data = tmp.path / "data";
  const fs::path cluster = data / "postgres";
  auto postgres = LookupIdentity("postgres");
  REQUIRE(postgres.ok());
  fs::create_directories(cluster);
  chmod(data.c_str(), 0711);
  chmod(cluster.c_str(), 0700);
  REQUIRE(chown(cluster.c_str(), postgres->uid, postgres->gid) == 0);
  // What kiln made before: superuser 'kiln', trust over the socket, a database with rows.
  std::string bin;  // the newest installed server's programs, as EmbeddedPostgres picks them
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql")) {
    if (fs::exists(entry.path() / "bin" / "initdb") && (entry.path() / "bin").string() > bin) {
      bin = (entry.path() / "bin").string();
    }
  }
  const std::string script =
      bin + "/initdb -D " + cluster.string() +
      " -U kiln --auth-local=trust >/dev/null && echo \"include_if_exists = 'kiln.conf'\" >> " +
      cluster.string() + "/postgresql.conf && " + bin + "/pg_ctl -D " + cluster.string() +
      " -o \"-k " + cluster.string() + " -c listen_addresses=\" -l " +
      (tmp.path / "old.log").string() + " start -w >/dev/null && " + bin + "/psql -X -q -h " +
      cluster.string() + " -U kiln -d postgres -c 'CREATE DATABASE kiln' &&" + bin +
      "/psql -X -q -h " + cluster.string() +
      " -U kiln -d kiln -c 'CREATE TABLE kept AS SELECT 42 AS answer' && " + bin + "/pg_ctl -D " +
      cluster.string() + " stop -w >/dev/null";
  chmod(tmp.path.c_str(), 0777);
  auto made = RunProgram({"/bin/sh", "-c", script}, {"PATH=/usr/bin:/bin"}, *postgres);
  REQUIRE(made.ok());
  INFO(made->output);
  REQUIRE(made->exit_code == 0);

  EmbeddedOptions options;
  options.data_dir = data;
  auto pg = EmbeddedPostgres::Start(options);
  if (!pg.ok()) FAIL(pg.message());
  CHECK(Query((*pg)->url(), "SELECT answer FROM kept") == "42");
  CHECK(Query((*pg)->url(), "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'kiln'") ==
        "false");
  CHECK(Query((*pg)->url(), "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'postgres'") ==
        "true");
  // The bootstrap superuser (owner of the catalogs) is 'postgres' now; kiln is a new role that
  // owns its database and what is in it.
  CHECK(Query((*pg)->url(), "SELECT rolname FROM pg_roles WHERE oid = 10") == "postgres");
  CHECK(Query((*pg)->url(), "SELECT tableowner FROM pg_tables WHERE tablename = 'kept'") == "kiln");
  CHECK(Query((*pg)->url(),
              "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'kiln'") == "kiln");
  CHECK(Query((*pg)->url(), "SELECT count(*) FROM pg_roles WHERE rolname = 'kiln_rename'") == "0");
  // And again: nothing left to take over.
  REQUIRE((*pg)->Stop().ok());
  auto again = EmbeddedPostgres::Start(options);
  if (!again.ok()) FAIL(again.message());
  CHECK(Query((*again)->url(), "SELECT answer FROM kept") == "42");
}
