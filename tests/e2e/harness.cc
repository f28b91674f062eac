#include "harness.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace kiln::e2e {

namespace fs = std::filesystem;

Output Exec(const std::vector<std::string>& argv, const fs::path& cwd,
            const std::map<std::string, std::string>& env) {
  TempDir io;
  fs::path out_path = io / "stdout", err_path = io / "stderr";
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) {
    if (v.empty()) {
      merged.erase(k);
    } else {
      merged[k] = v;
    }
  }
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  Output out;
  out.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  out.out = ReadFile(out_path);
  out.err = ReadFile(err_path);
  return out;
}

std::string KilnBinary() { return KILN_BINARY; }
fs::path SourceDir() { return KILN_SOURCE_DIR; }

namespace {

std::string FixtureUrl() {
  const char* url = std::getenv("KILN_TEST_DATABASE_URL");
  if (!url) throw std::runtime_error("KILN_TEST_DATABASE_URL is not set (run through ctest)");
  return url;
}

std::string WithDbName(const std::string& url, const std::string& name) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "dbname=" + name;
}

// A database of this test process's own (ctest runs each test case in a process of its own):
// daemons of tests running side by side never share a database, so none takes over another's
// runs. Dropped when the process exits.
struct ProcessDatabase {
  ProcessDatabase() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    name = std::string("kiln_e2e_") + buf;
    auto r = Exec({"/usr/bin/psql", FixtureUrl(), "-v", "ON_ERROR_STOP=1", "-qAtc",
                   "CREATE DATABASE " + name});
    if (r.code != 0) throw std::runtime_error("creating the test database failed: " + r.err);
    url = WithDbName(FixtureUrl(), name);
  }
  ~ProcessDatabase() {
    Exec({"/usr/bin/psql", FixtureUrl(), "-qAtc",
          "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"});
  }
  std::string name;
  std::string url;
};

}  // namespace

std::string DatabaseUrl() {
  static ProcessDatabase db;
  return db.url;
}

Output Kiln(const std::vector<std::string>& args, const fs::path& cwd,
            std::map<std::string, std::string> env) {
  std::vector<std::string> argv = {KilnBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  if (!env.count("KILN_DATABASE_URL")) env["KILN_DATABASE_URL"] = DatabaseUrl();
  return Exec(argv, cwd, env);
}

std::string Sql(const std::string& query) { return SqlAt(DatabaseUrl(), query); }

std::string SqlAt(const std::string& url, const std::string& query) {
  auto r = Exec({"/usr/bin/psql", url, "-v", "ON_ERROR_STOP=1", "-Atc", query});
  if (r.code != 0) throw std::runtime_error("psql failed: " + r.err);
  while (!r.out.empty() && r.out.back() == '\n') r.out.pop_back();
  return r.out;
}

void WaitFor(const std::function<bool()>& condition, const std::string& what,
             std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("gave up waiting " + std::to_string(timeout.count()) + " s for " +
                               what);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<int> ProcessesMentioning(const std::string& text) {
  std::vector<int> out;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    const int pid = std::stoi(name);
    if (pid == getpid()) continue;
    std::string args;
    try {
      std::ifstream cmdline(entry.path() / "cmdline", std::ios::binary);
      args.assign(std::istreambuf_iterator<char>(cmdline), std::istreambuf_iterator<char>());
    } catch (const std::exception&) {
      continue;  // it ended while being read (libstdc++ throws from underflow on ESRCH)
    }
    if (args.find(text) == std::string::npos || !ProcessAlive(pid)) continue;
    out.push_back(pid);
  }
  return out;
}

TempDir::TempDir() {
  std::string tmpl = "/tmp/kiln-e2e-XXXXXX";
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
  // Open to all like /tmp (sticky): the tasks of `kiln serve` run as the unprivileged user
  // kiln-task and leave their marker files here.
  fs::permissions(path_, fs::perms(01777));
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void WriteFile(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::string Unique(const std::string& base) {
  std::random_device rd;
  std::ostringstream out;
  out << base << "-" << std::hex << rd();
  return out.str();
}

std::string Pipeline(const std::string& name, const std::string& keys, const std::string& command) {
  return "[pipeline]\nname = \"" + name + "\"\n" + keys + "\n[tasks.t]\ncommand = \"" + command +
         "\"\n";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

int64_t AlignedOffset(std::chrono::seconds period, std::chrono::seconds past) {
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const int64_t p = period.count();
  return ((past.count() - now % p) % p + p) % p;
}

std::string OffsetText(int64_t seconds) { return std::to_string(seconds) + "s"; }

bool ProcessAlive(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  std::string line;
  std::getline(stat, line);
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

std::string States(int64_t run) {
  return Sql(
      "select string_agg(task_id || ':' || state, ' ' order by position) from task_instances "
      "where run_id = " +
      std::to_string(run));
}

}  // namespace kiln::e2e
