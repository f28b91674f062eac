#include "store/embedded.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <pqxx/pqxx>
#include <system_error>

#include "common/log.h"
#include "store/postmaster.h"
#include "store/pq_internal.h"
#include "store/subprocess.h"

namespace kiln::store {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxSocketPath = 107;  // sizeof(sockaddr_un::sun_path) - 1
constexpr std::string_view kSocketName = "/.s.PGSQL.5432";
constexpr const char* kPgRoot = "/usr/lib/postgresql";

// The whole environment of initdb and pg_ctl (and so of the postmaster): nothing of kiln's.
const std::vector<std::string> kChildEnv = {"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8"};

std::string ErrnoText() { return std::strerror(errno); }

std::string LastLine(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  size_t nl = text.rfind('\n');
  return OneLine(nl == std::string_view::npos ? text : text.substr(nl + 1));
}

std::string LastLineOfFile(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  in.seekg(std::max<std::streamoff>(0, size - 4096));
  std::string tail((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return LastLine(tail);
}

// pg_ctl builds a /bin/sh command line from the -D and -l paths.
Status CheckPath(const fs::path& dir) {
  const std::string s = dir.string();
  if (s.find_first_of("\"`$\\\n") != std::string::npos) {
    return Status::Error("data folder '" + s +
                         "': PostgreSQL's pg_ctl cannot use a path containing \" ` $ \\ or a "
                         "newline; choose another data folder or set database.url");
  }
  std::string socket = s + "/postgres" + std::string(kSocketName);
  if (socket.size() > kMaxSocketPath) {
    return Status::Error("data folder '" + s + "' is too long for PostgreSQL's Unix socket (" +
                         socket + " has " + std::to_string(socket.size()) +
                         " characters, at most " + std::to_string(kMaxSocketPath) +
                         "); choose a shorter data folder or set database.url");
  }
  return Status::Ok();
}

Result<Identity> ChooseUser(const std::string& configured) {
  Identity self = CurrentIdentity();
  if (self.uid != 0) {
    if (!configured.empty() && configured != self.name) {
      return Status::Error("embedded PostgreSQL: cannot run it as user '" + configured +
                           "' unless kiln runs as root; leave run_as_user empty");
    }
    return self;
  }
  std::string name = configured;
  if (name.empty()) name = LookupIdentity("kiln").ok() ? "kiln" : "postgres";
  auto user = LookupIdentity(name);
  if (!user.ok() || user->uid == 0) {
    return Status::Error(
        "embedded PostgreSQL refuses to run as root and there is no unprivileged user '" + name +
        "' to run it as; create one (useradd --system kiln), run kiln as another user, or set "
        "database.url");
  }
  return user;
}

Result<fs::path> FindBinDir(const fs::path& configured, const fs::path& cluster) {
  if (!configured.empty()) {
    if (access((configured / "initdb").c_str(), X_OK) != 0) {
      return Status::Error("pg_bin_dir '" + configured.string() +
                           "' has no initdb; point it at PostgreSQL's bin folder");
    }
    return configured;
  }
  std::ifstream version_file(cluster / "PG_VERSION");
  std::string major;
  if (version_file >> major) {
    fs::path bin = fs::path(kPgRoot) / major / "bin";
    if (access((bin / "pg_ctl").c_str(), X_OK) == 0) return bin;
    return Status::Error("the cluster in " + cluster.string() + " was created by PostgreSQL " +
                         major + ", whose programs are not installed (" + bin.string() +
                         "); install postgresql-" + major + " or set pg_bin_dir");
  }
  int newest = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kPgRoot, ec)) {
    const std::string name = entry.path().filename().string();
    auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (name.empty() || name.size() > 4 || !std::all_of(name.begin(), name.end(), digit)) continue;
    if (access((entry.path() / "bin" / "initdb").c_str(), X_OK) != 0) continue;
    newest = std::max(newest, std::stoi(name));
  }
  if (newest < 0) {
    return Status::Error(std::string("no PostgreSQL server programs in ") + kPgRoot +
                         "/*/bin; install the postgresql package, set pg_bin_dir, or set "
                         "database.url");
  }
  return fs::path(kPgRoot) / std::to_string(newest) / "bin";
}

// A file of `user` written from scratch: unlink + O_EXCL | O_NOFOLLOW, so that a link planted in
// the cluster folder cannot redirect a write made as root.
Status WriteOwnedFile(const fs::path& path, const std::string& content, const Identity& user) {
  unlink(path.c_str());
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Error(path.string() + ": " + ErrnoText());
  bool ok = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  if (ok && user.switch_user) ok = fchown(fd, user.uid, user.gid) == 0;
  std::string error = ok ? "" : ErrnoText();
  close(fd);
  if (!ok) return Status::Error(path.string() + ": " + error);
  return Status::Ok();
}

// <data_dir>, 0711 when created for another user, so that PostgreSQL can pass through it.
Status EnsureDataDir(const fs::path& data_dir, const Identity& user) {
  if (fs::exists(data_dir)) return Status::Ok();
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) return Status::Error("data folder " + data_dir.string() + ": " + ec.message());
  if (user.switch_user) chmod(data_dir.c_str(), 0711);
  return Status::Ok();
}

// PostgreSQL's user must be able to enter every folder above its cluster.
Status CheckReachable(const fs::path& data_dir, const Identity& user) {
  if (!user.switch_user) return Status::Ok();
  auto blocked = FirstUnsearchable(FoldersDownTo(data_dir.string()), user);
  if (!blocked.ok()) return blocked.status();
  if (!*blocked) return Status::Ok();
  const std::string& dir = **blocked;
  return Status::Error("embedded PostgreSQL runs as user '" + user.name +
                       "', which cannot enter folder " + dir + "; allow it (chmod o+x " + dir +
                       "), choose a data folder it can reach, or set database.url");
}

// <data_dir>/postgres (0700, the user's) and the log file (the user's: pg_ctl opens it as that
// user).
Status PrepareCluster(const fs::path& cluster, const fs::path& log_file, const Identity& user) {
  struct stat st {};
  if (stat(cluster.c_str(), &st) != 0) {
    if (mkdir(cluster.c_str(), 0700) != 0 ||
        (user.switch_user && chown(cluster.c_str(), user.uid, user.gid) != 0)) {
      return Status::Error("creating " + cluster.string() + ": " + ErrnoText());
    }
  } else if (st.st_uid != user.uid) {
    return Status::Error(cluster.string() + " belongs to uid " + std::to_string(st.st_uid) +
                         ", but PostgreSQL runs as '" + user.name + "'; chown -R " + user.name +
                         " " + cluster.string());
  }
  int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && (!user.switch_user || fchown(fd, user.uid, user.gid) == 0);
  std::string error = ok ? "" : ErrnoText();
  if (fd >= 0) close(fd);
  if (!ok) return Status::Error("log file " + log_file.string() + ": " + error);
  return Status::Ok();
}

Result<ProgramResult> Run(const fs::path& bin_dir, std::string program,
                          std::vector<std::string> args, const Identity& user) {
  args.insert(args.begin(), (bin_dir / program).string());
  return RunProgram(args, kChildEnv, user);
}

Status InitCluster(const fs::path& bin_dir, const fs::path& cluster, const Identity& user) {
  if (fs::exists(cluster / "PG_VERSION")) return Status::Ok();
  std::error_code ec;
  if (!fs::is_empty(cluster, ec)) {
    return Status::Error(cluster.string() +
                         " is not empty but holds no PostgreSQL cluster; move it away so that "
                         "kiln can create one");
  }
  log::Info("embedded PostgreSQL: creating a cluster in " + cluster.string());
  auto initdb = Run(bin_dir, "initdb",
                    {"-D", cluster.string(), "-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8",
                     "--auth-local=peer", "--auth-host=reject"},
                    user);
  if (!initdb.ok()) return initdb.status();
  if (initdb->exit_code != 0) {
    return Status::Error("initdb failed for " + cluster.string() + " (exit " +
                         std::to_string(initdb->exit_code) + "): " + LastLine(initdb->output));
  }
  // Our settings live in kiln.conf, rewritten at every start.
  fs::path conf = cluster / "postgresql.conf";
  int fd = open(conf.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  const std::string include = "\ninclude_if_exists = 'kiln.conf'\n";
  bool ok =
      fd >= 0 && write(fd, include.data(), include.size()) == static_cast<ssize_t>(include.size());
  std::string error = ok ? "" : ErrnoText();
  if (fd >= 0) close(fd);
  if (!ok) return Status::Error(conf.string() + ": " + error);
  return Status::Ok();
}

// Starts the server, or nothing when one already runs on the cluster (left by a kiln that
// crashed: a second one would refuse to start). A lock file left by a server that is gone, or
// naming a process that is not the server (a pid reused since), is removed first: the server
// would refuse to start over a live pid's file. `*server_pid` is the server when it is this
// process's child.
Status StartServer(const fs::path& bin_dir, const fs::path& cluster, const fs::path& log_file,
                   const Identity& user, bool alone, pid_t* server_pid) {
  auto found = FindServer(cluster, user.uid);
  if (!found.ok()) {
    return Status::Error("embedded PostgreSQL in " + cluster.string() + ": " + found.message());
  }
  if (found->kind == LockHolder::kServer) {
    if (alone) {
      log::Warn("embedded PostgreSQL: reusing the server still running in " + cluster.string() +
                " (left by an earlier kiln)");
    } else {
      log::Info("embedded PostgreSQL: using the server in " + cluster.string() +
                " that another kiln process uses");
    }
    // It read its access rules when it started; the ones just written count from now on.
    if (Status s = SignalServer(*found, SIGHUP); !s.ok()) {
      return Status::Error("embedded PostgreSQL in " + cluster.string() +
                           " did not reload its access rules: " + s.message());
    }
    return Status::Ok();
  }
  if (found->kind == LockHolder::kStale) {
    log::Warn("embedded PostgreSQL: removing " + cluster.string() +
              "/postmaster.pid, left by a server that is gone (it names pid " +
              std::to_string(found->pid) + ", which is not this cluster's server)");
    if (unlink((cluster / "postmaster.pid").c_str()) != 0 && errno != ENOENT) {
      return Status::Error("removing " + cluster.string() + "/postmaster.pid: " + ErrnoText());
    }
  }
  // What pg_ctl start -w does, without its look every 100 ms: the server in a session of its
  // own, its output appended to the log, taken as soon as its lock file says "ready", and its
  // exit (a server that cannot start) noticed through a pidfd. It is this process's child; a
  // SIGKILL of kiln leaves it to init, running, and the next start reuses it.
  const int log_fd =
      open(log_file.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (log_fd < 0) return Status::Error("log file " + log_file.string() + ": " + ErrnoText());
  // Opened without blocking (a FIFO planted there would hold kiln); the server writes blocking.
  struct stat st {};
  if (fstat(log_fd, &st) != 0 || !S_ISREG(st.st_mode) || fcntl(log_fd, F_SETFL, O_APPEND) != 0) {
    close(log_fd);
    return Status::Error("log file " + log_file.string() + ": not a regular file of its own");
  }
  auto server = StartProgram({(bin_dir / "postgres").string(), "-D", cluster.string()}, kChildEnv,
                             user, log_fd);
  if (!server.ok()) return server.status();
  *server_pid = *server;
  int exit_code = 0;
  auto ready = WaitUntilReady(cluster, user.uid, *server, std::chrono::seconds(60), &exit_code);
  if (!ready.ok()) {
    // Not left running unseen: an immediate shutdown, and reaped.
    kill(*server, SIGQUIT);
    while (waitpid(*server, nullptr, 0) < 0 && errno == EINTR) {
    }
    *server_pid = 0;
    return Status::Error("embedded PostgreSQL did not start in " + cluster.string() + ": " +
                         ready.message() + " (see " + log_file.string() + ")");
  }
  if (!*ready) {
    *server_pid = 0;  // exited, reaped
    return Status::Error("embedded PostgreSQL did not start in " + cluster.string() + ": " +
                         LastLineOfFile(log_file) + " (see " + log_file.string() + ")");
  }
  return Status::Ok();
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Who may connect, rewritten at every start: peer authentication over the socket only, where
// PostgreSQL's own user may be the superuser 'postgres' or 'kiln', and kiln's user only 'kiln'.
// The socket's folder is PostgreSQL's user's and mode 0700 besides, so that nobody else (a task
// running as another user) can even reach the socket.
Status WriteAccessRules(const fs::path& cluster, const Identity& pg_user, const Identity& self) {
  for (const std::string* name : {&pg_user.name, &self.name}) {
    if (name->empty() || name->find_first_of("\" \t\n#") != std::string::npos) {
      return Status::Error("embedded PostgreSQL: user name '" + *name +
                           "' cannot be written into pg_ident.conf; run kiln as a user with a "
                           "plain name or set database.url");
    }
  }
  const std::string header = "# Written by kiln at every start: edits are lost.\n";
  std::string ident =
      header + "kiln \"" + pg_user.name + "\" postgres\nkiln \"" + pg_user.name + "\" kiln\n";
  // root too, whoever starts it: a daemon run as root must still get in after a `kiln run` of
  // PostgreSQL's own user rewrote these files.
  if (self.name != pg_user.name && self.name != "root")
    ident += "kiln \"" + self.name + "\" kiln\n";
  if (pg_user.name != "root") ident += "kiln root kiln\n";
  const std::string hba = header + "local all all peer map=kiln\n";
  if (Status s = WriteOwnedFile(cluster / "pg_ident.conf", ident, pg_user); !s.ok()) return s;
  return WriteOwnedFile(cluster / "pg_hba.conf", hba, pg_user);
}

Result<ProgramResult> RunSqlFile(const fs::path& bin_dir, const fs::path& cluster,
                                 const std::string& role, const std::string& database,
                                 const std::string& sql, const Identity& user) {
  const fs::path file = cluster / "kiln-bootstrap.sql";
  if (Status s = WriteOwnedFile(file, sql, user); !s.ok()) return s;
  auto ran = Run(bin_dir, "psql",
                 {"-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", cluster.string(), "-U", role, "-d",
                  database, "-f", file.string()},
                 user);
  unlink(file.c_str());
  return ran;
}

constexpr const char* kRolesSql =
    "SELECT 'CREATE ROLE kiln LOGIN' WHERE NOT EXISTS "
    "(SELECT FROM pg_roles WHERE rolname = 'kiln') \\gexec\n"
    "ALTER ROLE kiln LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;\n"
    "SELECT 'CREATE DATABASE kiln OWNER kiln' WHERE NOT EXISTS "
    "(SELECT FROM pg_database WHERE datname = 'kiln') \\gexec\n"
    "ALTER DATABASE kiln OWNER TO kiln;\n";
// What a superuser made in the database (an earlier kiln's tables) becomes kiln's.
constexpr const char* kOwnersSql =
    "DO $$\nDECLARE r record;\nBEGIN\n"
    "  FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c\n"
    "      JOIN pg_namespace n ON n.oid = c.relnamespace\n"
    "      WHERE n.nspname = 'public' AND c.relowner <> 'kiln'::regrole\n"
    "        AND c.relkind IN ('r', 'p', 'v', 'm', 'f') LOOP\n"
    "    EXECUTE format(CASE r.relkind WHEN 'v' THEN 'ALTER VIEW %s OWNER TO kiln'\n"
    "      WHEN 'm' THEN 'ALTER MATERIALIZED VIEW %s OWNER TO kiln'\n"
    "      WHEN 'f' THEN 'ALTER FOREIGN TABLE %s OWNER TO kiln'\n"
    "      ELSE 'ALTER TABLE %s OWNER TO kiln' END, r.name);\n"
    "  END LOOP;\n"
    "  FOR r IN SELECT c.oid::regclass AS name FROM pg_class c\n"
    "      JOIN pg_namespace n ON n.oid = c.relnamespace\n"
    "      WHERE n.nspname = 'public' AND c.relowner <> 'kiln'::regrole AND c.relkind = 'S'\n"
    "        AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid\n"
    "                        AND d.deptype IN ('a', 'i')) LOOP\n"
    "    EXECUTE format('ALTER SEQUENCE %s OWNER TO kiln', r.name);\n"
    "  END LOOP;\n"
    "  FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p\n"
    "      JOIN pg_namespace n ON n.oid = p.pronamespace\n"
    "      WHERE n.nspname = 'public' AND p.proowner <> 'kiln'::regrole LOOP\n"
    "    EXECUTE format('ALTER ROUTINE %s OWNER TO kiln', r.name);\n"
    "  END LOOP;\n"
    "  IF (SELECT nspowner FROM pg_namespace WHERE nspname = 'public')\n"
    "      NOT IN ('kiln'::regrole, 'pg_database_owner'::regrole) THEN\n"
    "    ALTER SCHEMA public OWNER TO kiln;\n"
    "  END IF;\nEND $$;\n";

// The role 'kiln' (no superuser, no CREATEDB or CREATEROLE) and its database 'kiln', owning
// everything in its schema, made by the superuser 'postgres' through psql run as PostgreSQL's
// user. A cluster made by an earlier kiln has 'kiln' as its bootstrap superuser (the owner of
// the catalogs): it is renamed 'postgres' and a new role 'kiln' takes over the database.
Status Bootstrap(const fs::path& bin_dir, const fs::path& cluster, const Identity& user) {
  auto ran = RunSqlFile(bin_dir, cluster, "postgres", "postgres", kRolesSql, user);
  if (ran.ok() && ran->exit_code != 0 &&
      ran->output.find("role \"postgres\" does not exist") != std::string::npos) {
    log::Info(
        "embedded PostgreSQL: the superuser 'kiln' of an earlier kiln becomes 'postgres'; kiln "
        "connects as a new role 'kiln' that is no superuser");
    // The session user cannot be renamed: the renaming is done as a helper superuser.
    auto renamed = RunSqlFile(bin_dir, cluster, "kiln", "postgres",
                              "CREATE ROLE kiln_rename SUPERUSER;\n"
                              "SET SESSION AUTHORIZATION kiln_rename;\n"
                              "ALTER ROLE kiln RENAME TO postgres;\n"
                              "RESET SESSION AUTHORIZATION;\n"
                              "DROP ROLE kiln_rename;\n",
                              user);
    if (!renamed.ok()) return renamed.status();
    if (renamed->exit_code != 0) {
      return Status::Error("embedded PostgreSQL: renaming the superuser kiln to postgres: " +
                           LastLine(renamed->output));
    }
    ran = RunSqlFile(bin_dir, cluster, "postgres", "postgres", kRolesSql, user);
  }
  if (!ran.ok()) return ran.status();
  if (ran->exit_code != 0) {
    return Status::Error("embedded PostgreSQL: creating the role and database kiln: " +
                         LastLine(ran->output));
  }
  ran = RunSqlFile(bin_dir, cluster, "postgres", "kiln", kOwnersSql, user);
  if (!ran.ok()) return ran.status();
  if (ran->exit_code != 0) {
    return Status::Error("embedded PostgreSQL: giving the database's tables to kiln: " +
                         LastLine(ran->output));
  }
  return Status::Ok();
}

// Bootstrap ran to its end on this cluster (two psql runs, about 45 ms, saved at later starts).
// The version changes when Bootstrap does something new, so that older clusters get it once.
constexpr const char* kBootstrapMarker = "kiln-bootstrap";
constexpr const char* kBootstrapVersion = "1\n";

bool Bootstrapped(const fs::path& cluster, const Identity& user) {
  return ReadOwnedFile(cluster / kBootstrapMarker, user.uid, 64) == kBootstrapVersion;
}

}  // namespace

EmbeddedPostgres::EmbeddedPostgres() = default;

EmbeddedPostgres::~EmbeddedPostgres() {
  if (Status s = Stop(); !s.ok()) log::Error(s.message());
  if (users_ >= 0) close(users_);
}

namespace {

fs::path UsersFile(const fs::path& data_dir) { return data_dir / "postgres.users"; }

int OpenUsers(const fs::path& data_dir) {
  return open(UsersFile(data_dir).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
}

bool Flock(int fd, int how) {
  int rc;
  do {
    rc = flock(fd, how);
  } while (rc != 0 && errno == EINTR);
  return rc == 0;
}

}  // namespace

Result<int> EmbeddedPostgres::HoldUse(const fs::path& data_dir) {
  const int fd = OpenUsers(fs::absolute(data_dir).lexically_normal());
  if (fd < 0 || !Flock(fd, LOCK_SH)) {
    const std::string error = ErrnoText();
    if (fd >= 0) close(fd);
    return Status::Error(UsersFile(data_dir).string() + ": " + error);
  }
  return fd;
}

Result<std::unique_ptr<EmbeddedPostgres>> EmbeddedPostgres::Start(const EmbeddedOptions& options) {
  const fs::path data_dir = fs::absolute(options.data_dir).lexically_normal();
  if (Status s = CheckPath(data_dir); !s.ok()) return s;
  auto user = ChooseUser(options.run_as_user);
  if (!user.ok()) return user.status();
  std::unique_ptr<EmbeddedPostgres> pg(new EmbeddedPostgres());
  pg->cluster_dir_ = data_dir / "postgres";
  pg->user_ = std::make_unique<Identity>(std::move(user).value());
  const fs::path& cluster = pg->cluster_dir_;
  const fs::path log_file = data_dir / "postgres.log";
  if (Status s = EnsureDataDir(data_dir, *pg->user_); !s.ok()) return s;
  if (Status s = CheckReachable(data_dir, *pg->user_); !s.ok()) return s;
  if (Status s = PrepareCluster(cluster, log_file, *pg->user_); !s.ok()) return s;
  auto bin_dir = FindBinDir(options.pg_bin_dir, cluster);
  if (!bin_dir.ok()) return bin_dir.status();
  pg->bin_dir_ = *bin_dir;
  if (Status s = InitCluster(pg->bin_dir_, cluster, *pg->user_); !s.ok()) return s;
  const std::string conf =
      "# Written by kiln at every start: edits are lost.\nlisten_addresses = ''\n"
      "unix_socket_directories = '" +
      cluster.string() + "'\nunix_socket_permissions = 0700\n";
  if (Status s = WriteOwnedFile(cluster / "kiln.conf", conf, *pg->user_); !s.ok()) return s;
  if (Status s = WriteAccessRules(cluster, *pg->user_, CurrentIdentity()); !s.ok()) return s;
  // Used from now on: a server found running is another kiln's to share when someone else
  // holds the file too, left by an earlier kiln when nobody does. One being stopped (held
  // exclusively) is waited for, and then started again.
  pg->users_ = OpenUsers(data_dir);
  if (pg->users_ < 0) return Status::Error(UsersFile(data_dir).string() + ": " + ErrnoText());
  const bool alone = Flock(pg->users_, LOCK_EX | LOCK_NB);
  if (!Flock(pg->users_, LOCK_SH)) {
    return Status::Error(UsersFile(data_dir).string() + ": " + ErrnoText());
  }
  if (Status s = StartServer(pg->bin_dir_, cluster, log_file, *pg->user_, alone, &pg->server_);
      !s.ok()) {
    return s;
  }
  pg->running_ = true;
  pg->set_up_skipped_ = Bootstrapped(cluster, *pg->user_);
  if (!pg->set_up_skipped_) {
    if (Status s = pg->SetUp(); !s.ok()) return s;
  }
  pg->url_ = "postgresql:///kiln?host=" + PercentEncode(cluster.string()) + "&user=kiln";
  return pg;
}

Status EmbeddedPostgres::SetUp() {
  if (Status s = Bootstrap(bin_dir_, cluster_dir_, *user_); !s.ok()) return s;
  // Not written: set up again at the next start, which does no harm.
  if (Status s = WriteOwnedFile(cluster_dir_ / kBootstrapMarker, kBootstrapVersion, *user_);
      !s.ok()) {
    log::Warn("embedded PostgreSQL: " + s.message());
  }
  return Status::Ok();
}

Result<std::unique_ptr<Database>> EmbeddedPostgres::ConnectAndMigrate() {
  auto open = [this]() -> Result<std::unique_ptr<Database>> {
    auto db = Database::Connect(url_);
    if (!db.ok()) return db.status();
    if (Status s = (*db)->Migrate(); !s.ok()) return s;
    return db;
  };
  auto db = open();
  if (db.ok() || !set_up_skipped_) return db;
  log::Warn("embedded PostgreSQL: " + db.status().message() +
            "; setting up kiln's role and database in " + cluster_dir_.string() + " again");
  set_up_skipped_ = false;
  if (Status s = SetUp(); !s.ok()) return s;
  return open();
}

Status EmbeddedPostgres::StopLeftRunning(const EmbeddedOptions& options, int users) {
  const fs::path data_dir = fs::absolute(options.data_dir).lexically_normal();
  std::error_code ec;
  if (!fs::exists(data_dir / "postgres" / "postmaster.pid", ec)) return Status::Ok();
  auto user = ChooseUser(options.run_as_user);
  if (!user.ok()) return user.status();
  std::unique_ptr<EmbeddedPostgres> pg(new EmbeddedPostgres());
  pg->users_ = users >= 0 ? fcntl(users, F_DUPFD_CLOEXEC, 0) : OpenUsers(data_dir);
  pg->cluster_dir_ = data_dir / "postgres";
  auto bin_dir = FindBinDir(options.pg_bin_dir, pg->cluster_dir_);
  if (!bin_dir.ok()) return bin_dir.status();
  pg->bin_dir_ = *bin_dir;
  pg->user_ = std::make_unique<Identity>(std::move(user).value());
  pg->running_ = true;
  return pg->Stop();
}

uid_t EmbeddedPostgres::uid() const { return user_->uid; }

Status EmbeddedPostgres::Stop() {
  if (!running_) return Status::Ok();
  // Another kiln process still uses it (holds the file shared): the last one stops it. The shared
  // lock is let go first, so that of two users leaving at once the second always gets it.
  if (users_ >= 0) Flock(users_, LOCK_UN);
  const bool last = users_ < 0 || Flock(users_, LOCK_EX | LOCK_NB);
  if (!last) {
    log::Info("embedded PostgreSQL: left running in " + cluster_dir_.string() +
              " for the other kiln processes that use it");
    running_ = false;
  }
  Status stopped = last ? ShutDownServer() : Status::Ok();
  // No longer used by this object either way: a Start after this one must not wait for it.
  if (users_ >= 0) {
    Flock(users_, LOCK_UN);
    close(users_);
    users_ = -1;
  }
  return stopped;
}

Status EmbeddedPostgres::ShutDownServer() {
  // A server of this process's that died meanwhile (killed): reaped, nothing to stop.
  if (server_ > 0 && waitpid(server_, nullptr, WNOHANG) == server_) {
    server_ = 0;
    running_ = false;
    return Status::Ok();
  }
  // What pg_ctl stop -w -m fast does, woken by the server's exit instead of looking every
  // 100 ms. Stopped by someone else meanwhile: nothing to stop.
  auto stopped = ShutDown(cluster_dir_, user_->uid, std::chrono::seconds(60));
  if (!stopped.ok()) {
    return Status::Error("embedded PostgreSQL in " + cluster_dir_.string() +
                         " did not stop: " + stopped.message());
  }
  running_ = false;
  server_ = 0;
  return Status::Ok();
}

}  // namespace kiln::store
