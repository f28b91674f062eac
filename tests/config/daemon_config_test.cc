#include "config/daemon_config.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using kiln::config::DaemonConfig;
using kiln::config::ParseByteSize;
using kiln::config::ParseDaemonConfig;
using namespace std::chrono_literals;

namespace {

using Strings = std::vector<std::string>;

Strings ConfigErrors(std::string_view text) {
  Strings out;
  for (const auto& d : ParseDaemonConfig(text, "kiln.toml").diagnostics) {
    out.push_back(d.ToString());
  }
  return out;
}

}  // namespace

TEST_CASE("the default daemon configuration") {
  const DaemonConfig config = kiln::config::DefaultDaemonConfig();
  CHECK(config.data_dir == ".kiln");
  CHECK(config.pipelines_dir.empty());
  CHECK(config.listen == "127.0.0.1:8080");
  CHECK(config.database_url.empty());
  CHECK(config.pg_bin_dir.empty());
  CHECK(config.max_parallel_tasks == 16);
  CHECK(config.log_cap_bytes == 64u * 1024 * 1024);
  CHECK(config.kill_grace == 10s);
  CHECK_FALSE(config.run_as.has_value());
  CHECK_FALSE(config.run_uids.has_value());
  CHECK(config.pools == std::map<std::string, int>{{"default", 16}});
}

TEST_CASE("an empty file gives the defaults") {
  auto result = ParseDaemonConfig("", "/etc/kiln/kiln.toml");
  CHECK(result.diagnostics.empty());
  CHECK(result.config.data_dir == ".kiln");
  CHECK(result.config.pools == std::map<std::string, int>{{"default", 16}});
}

TEST_CASE("every key of kiln.toml is read, relative paths are resolved against its folder") {
  auto result = ParseDaemonConfig(R"toml(
data_dir = "state"
pipelines = "../pipelines"
[server]
listen = "0.0.0.0:9000"
[database]
url = "postgresql://kiln@db/kiln"
pg_bin_dir = "/opt/pgsql/bin"
[executor]
max_parallel_tasks = 8
log_cap = "512KiB"
kill_grace = "30s"
run_as = "ml-jobs"
run_uids = "200000-200999"
[pools]
gpu = 2
io = 4
[scheduler]
catchup_cap = 5
clock_offset = "-1h30m"
)toml",
                                  "/etc/kiln/kiln.toml");
  for (const auto& d : result.diagnostics) INFO(d.ToString());
  REQUIRE(result.diagnostics.empty());
  const DaemonConfig& c = result.config;
  CHECK(c.data_dir == "/etc/kiln/state");
  CHECK(c.pipelines_dir == "/etc/pipelines");
  CHECK(c.listen == "0.0.0.0:9000");
  CHECK(c.database_url == "postgresql://kiln@db/kiln");
  CHECK(c.pg_bin_dir == "/opt/pgsql/bin");
  CHECK(c.max_parallel_tasks == 8);
  CHECK(c.log_cap_bytes == 512u * 1024);
  CHECK(c.kill_grace == 30s);
  CHECK(c.run_as == "ml-jobs");
  REQUIRE(c.run_uids.has_value());
  CHECK(c.run_uids->first == 200000);
  CHECK(c.run_uids->count == 1000);
  CHECK(c.pools == std::map<std::string, int>{{"default", 8}, {"gpu", 2}, {"io", 4}});
  CHECK(c.catchup_cap == 5);
  CHECK(c.clock_offset == -90min);
}

TEST_CASE("the documented kiln.toml is valid, empty url and pg_bin_dir mean automatic") {
  auto result = ParseDaemonConfig(R"toml(
data_dir = ".kiln"
pipelines = "pipelines"
[server]
listen = "127.0.0.1:8080"
[database]
url = ""
pg_bin_dir = ""
[executor]
max_parallel_tasks = 16
log_cap = "64MiB"
kill_grace = "10s"
run_as = "kiln-task"
run_uids = "1879048192-1895825407"
[pools]
default = 16
gpu = 1
[scheduler]
catchup_cap = 100
clock_offset = "0s"
)toml",
                                  "/srv/kiln/kiln.toml");
  for (const auto& d : result.diagnostics) INFO(d.ToString());
  CHECK(result.diagnostics.empty());
  CHECK(result.config.data_dir == "/srv/kiln/.kiln");
  CHECK(result.config.pipelines_dir == "/srv/kiln/pipelines");
  CHECK(result.config.database_url.empty());
  CHECK(result.config.pg_bin_dir.empty());
  CHECK(ConfigErrors("data_dir = \"\"\n") ==
        Strings{"kiln.toml:1:12: data_dir: empty path; expected a folder"});
}

TEST_CASE("a relative config file resolves paths against its absolute folder") {
  auto result = ParseDaemonConfig("data_dir = \"data\"\n[pools]\ndefault = 3\n", "conf/kiln.toml");
  CHECK(result.config.data_dir == fs::current_path() / "conf" / "data");
  CHECK(result.config.pools == std::map<std::string, int>{{"default", 3}});
}

TEST_CASE("log_cap is bytes or a size with a unit") {
  CHECK(ParseDaemonConfig("[executor]\nlog_cap = 1000\n", "k.toml").config.log_cap_bytes == 1000);
  CHECK(*ParseByteSize("64MiB") == 64u << 20);
  CHECK(*ParseByteSize("1GiB") == 1u << 30);
  CHECK(*ParseByteSize("10MB") == 10000000u);
  CHECK(*ParseByteSize("512") == 512u);
  CHECK(*ParseByteSize("7B") == 7u);
  CHECK_FALSE(ParseByteSize("64 MiB").ok());
  CHECK_FALSE(ParseByteSize("MiB").ok());
  CHECK_FALSE(ParseByteSize("64mib").ok());
  CHECK(ParseByteSize("99999999999999999999").message() ==
        "invalid size \"99999999999999999999\": larger than 16 EiB, the most a size can hold");
  CHECK(ParseByteSize("20000000TiB").message() ==
        "invalid size \"20000000TiB\": larger than 16 EiB, the most a size can hold");
  CHECK(ParseByteSize("64mib").message().starts_with(
      "invalid size \"64mib\"; expected a number of bytes with an optional unit B, KiB"));
}

TEST_CASE("daemon config errors have file:line:col and say what is accepted") {
  CHECK(ConfigErrors("data_dir = 5\n[server]\nlisten = \"localhost\"\nport = 80\n") ==
        Strings{
            "kiln.toml:1:12: data_dir: expected a string, got an integer",
            "kiln.toml:3:10: server.listen: invalid listen address 'localhost'; expected "
            "HOST:PORT with a port from 0 to 65535, e.g. \"127.0.0.1:8080\"",
            "kiln.toml:4:1: server.port: unknown key 'port' (accepted: listen)",
        });
  CHECK(
      ConfigErrors("[executor]\nmax_parallel_task = 4\nlog_cap = \"64 MB\"\nkill_grace = \"soon\"\n"
                   "run_as = \"bob smith\"\nrun_uids = \"5-4\"\n") ==
      Strings{
          "kiln.toml:2:1: executor.max_parallel_task: unknown key 'max_parallel_task'; did you "
          "mean 'max_parallel_tasks'? (accepted: allow_absolute_paths, kill_grace, log_cap, "
          "max_parallel_tasks, mode, run_as, run_uids, worker_pools)",
          "kiln.toml:3:11: executor.log_cap: invalid size \"64 MB\"; expected a number of bytes "
          "with an optional unit B, KiB, MiB, GiB, TiB, KB, MB, GB or TB, e.g. \"64MiB\"",
          "kiln.toml:4:14: executor.kill_grace: invalid duration \"soon\": number expected; "
          "expected numbers with units ms, s, m, h, d, e.g. \"90s\", \"1h30m\", \"250ms\"",
          "kiln.toml:5:10: executor.run_as: 'bob smith' is not a user name: use 1-64 of A-Z "
          "a-z 0-9 _ . - (not starting with -)",
          "kiln.toml:6:12: executor.run_uids: invalid range \"5-4\"; expected \"FIRST-LAST\" "
          "with 1000 <= FIRST <= LAST <= 2147483646 and at most 16777216 ids, e.g. "
          "\"1879048192-1895825407\", or \"\" for none",
      });
  CHECK(ConfigErrors("[scheduler]\ncatchup_cap = 0\nclock_offset = \"-later\"\n") ==
        Strings{
            "kiln.toml:2:15: scheduler.catchup_cap: must be a whole number from 1 to 2147483647, "
            "got 0",
            "kiln.toml:3:16: scheduler.clock_offset: invalid duration \"-later\": number expected; "
            "expected numbers with units ms, s, m, h, d, e.g. \"90s\", \"1h30m\", \"250ms\"",
        });
  CHECK(ConfigErrors("[pools]\ngpu = 0\ncpu = \"4\"\nbig = 5000000000\n[databse]\nurl = \"x\"\n") ==
        Strings{
            "kiln.toml:2:7: pools.gpu: must be a whole number from 1 to 2147483647, got 0",
            "kiln.toml:3:7: pools.cpu: expected an integer, got a string",
            "kiln.toml:4:7: pools.big: must be a whole number from 1 to 2147483647, got "
            "5000000000",
            "kiln.toml:5:2: databse: unknown key 'databse'; did you mean 'database'? (accepted: "
            "auth, daemon, data_dir, database, executor, notify, pipelines, public_url, pools, "
            "retention, scheduler, secrets, server)",
        });
  CHECK(ConfigErrors("[executor]\nmax_parallel_tasks = 0\nlog_cap = -1\n") ==
        Strings{"kiln.toml:2:22: executor.max_parallel_tasks: must be a whole number from 1 to "
                "2147483647, got 0",
                "kiln.toml:3:11: executor.log_cap: must not be negative, got -1"});
  CHECK(ConfigErrors("[server\n") ==
        Strings{"kiln.toml:1:8: invalid TOML: error while parsing table header: expected ']', "
                "saw '\\n'"});
}

TEST_CASE("a missing daemon config file is one diagnostic with the defaults") {
  auto result = kiln::config::LoadDaemonConfig("no/such/kiln.toml");
  REQUIRE(result.diagnostics.size() == 1);
  CHECK(result.diagnostics[0].ToString() ==
        "no/such/kiln.toml: cannot read file: No such file or directory");
  CHECK(result.config.max_parallel_tasks == 16);
}

TEST_CASE("[[auth.tokens]] declares tokens by name, role and hash") {
  const std::string a(64, 'a'), b(64, 'b');
  auto result =
      ParseDaemonConfig("[[auth.tokens]]\nname = \"ci\"\nrole = \"operator\"\nsha256 = \"" + a +
                            "\"\n[[auth.tokens]]\nname = \"ops@team\"\nrole = \"admin\"\n"
                            "sha256 = \"" +
                            b + "\"\n",
                        "kiln.toml");
  REQUIRE(result.diagnostics.empty());
  REQUIRE(result.config.tokens.size() == 2);
  CHECK(result.config.tokens[0].name == "ci");
  CHECK(result.config.tokens[0].role == "operator");
  CHECK(result.config.tokens[0].sha256 == a);
  CHECK(result.config.tokens[1].name == "ops@team");
  CHECK(result.config.tokens[1].role == "admin");
  CHECK(kiln::config::DefaultDaemonConfig().tokens.empty());
}

TEST_CASE("bad tokens are errors at the field") {
  const std::string a(64, 'a');
  CHECK(ConfigErrors("[[auth.tokens]]\nname = \"ci\"\nrole = \"root\"\nsha256 = \"" + a + "\"\n") ==
        Strings{"kiln.toml:3:8: auth.tokens[0].role: unknown role 'root' (accepted: admin, "
                "operator, viewer)"});
  CHECK(
      ConfigErrors("[[auth.tokens]]\nname = \"ci\"\nrole = \"viewr\"\nsha256 = \"" + a + "\"\n") ==
      Strings{"kiln.toml:3:8: auth.tokens[0].role: unknown role 'viewr'; did you mean "
              "'viewer'? (accepted: admin, operator, viewer)"});
  CHECK(ConfigErrors("[[auth.tokens]]\nname = \"ci\"\nrole = \"viewer\"\nsha256 = \"secret\"\n") ==
        Strings{"kiln.toml:4:10: auth.tokens[0].sha256: expected the token's SHA-256 as 64 "
                "lowercase hex digits (kiln token new prints it), got 6 characters"});
  CHECK(ConfigErrors("[[auth.tokens]]\nname = \"a b\"\nrole = \"viewer\"\nsha256 = \"" + a +
                     "\"\n") ==
        Strings{"kiln.toml:2:8: auth.tokens[0].name: token name 'a b' must be 1-64 of A-Z a-z "
                "0-9 _ . @ -"});
  CHECK(ConfigErrors("[[auth.tokens]]\nname = \"ci\"\nrole = \"viewer\"\n") ==
        Strings{"kiln.toml:1:1: auth.tokens[0].sha256: missing; every token needs name, role "
                "and sha256"});
  CHECK(ConfigErrors("[[auth.tokens]]\nname = \"ci\"\nrole = \"viewer\"\nsha256 = \"" + a +
                     "\"\ntoken = \"x\"\n") ==
        Strings{"kiln.toml:5:1: auth.tokens[0].token: unknown key "
                "'token' (accepted: name, role, sha256)"});
  CHECK(ConfigErrors("[auth]\ntokens = \"x\"\n") ==
        Strings{"kiln.toml:2:10: auth.tokens: expected an array of tables ([[auth.tokens]]), got "
                "a string"});
}

TEST_CASE("two tokens may not share a name or a hash") {
  const std::string a(64, 'a'), b(64, 'b');
  auto token = [](std::string name, std::string hash) {
    return "[[auth.tokens]]\nname = \"" + name + "\"\nrole = \"viewer\"\nsha256 = \"" + hash +
           "\"\n";
  };
  CHECK(ConfigErrors(token("ci", a) + token("ci", b)) ==
        Strings{"kiln.toml:6:8: auth.tokens[1].name: token name 'ci' is used twice"});
  CHECK(ConfigErrors(token("ci", a) + token("ops", a)) ==
        Strings{"kiln.toml:8:10: auth.tokens[1].sha256: the same token is declared for 'ci' and "
                "'ops'"});
}

TEST_CASE("secrets are declared by where their values are read from") {
  auto result = ParseDaemonConfig(
      "[secrets]\ndb_password = { file = \"secrets/db\" }\napi_key = { env = \"API_KEY\" }\n",
      "/etc/kiln/kiln.toml");
  REQUIRE(result.diagnostics.empty());
  const auto& s = result.config.secrets;
  REQUIRE(s.size() == 2);
  CHECK(s.at("db_password").from == kiln::config::SecretRef::From::kFile);
  CHECK(s.at("db_password").where == "/etc/kiln/secrets/db");
  CHECK(s.at("api_key").from == kiln::config::SecretRef::From::kEnv);
  CHECK(s.at("api_key").where == "API_KEY");
  CHECK(ConfigErrors(
            "[secrets]\n9x = { env = \"A\" }\nboth = { env = \"A\", file = \"/f\" }\n"
            "none = {}\nbad = { env = \"A-B\" }\nplain = \"hunter2\"\nodd = { path = \"/f\" }\n") ==
        Strings{
            "kiln.toml:2:1: secrets.9x: secret name '9x' must be 1-64 of A-Z a-z 0-9 _, not "
            "starting with a digit",
            "kiln.toml:3:8: secrets.both: give exactly one of file = \"/path\" or env = "
            "\"VARIABLE\" (where its value is read from)",
            "kiln.toml:4:8: secrets.none: give exactly one of file = \"/path\" or env = "
            "\"VARIABLE\" (where its value is read from)",
            "kiln.toml:5:15: secrets.bad.env: 'A-B' is not an environment variable name (A-Z a-z "
            "0-9 _)",
            "kiln.toml:6:9: secrets.plain: expected a table, got a string",
            "kiln.toml:7:7: secrets.odd: give exactly one of file = \"/path\" or env = "
            "\"VARIABLE\" (where its value is read from)",
            "kiln.toml:7:9: secrets.odd.path: unknown key 'path' (accepted: env, file)",
        });
}

TEST_CASE("a secret's value is read when used, without its trailing newline") {
  const fs::path dir = fs::temp_directory_path() / "kiln_secret_test";
  fs::create_directories(dir);
  {
    std::ofstream(dir / "pw") << "hunter2\n";
    std::ofstream(dir / "empty") << "\n";
  }
  using kiln::config::SecretRef;
  kiln::config::SecretReader read({{"pw", {SecretRef::From::kFile, (dir / "pw").string()}},
                                   {"empty", {SecretRef::From::kFile, (dir / "empty").string()}},
                                   {"gone", {SecretRef::From::kFile, (dir / "gone").string()}},
                                   {"var", {SecretRef::From::kEnv, "KILN_TEST_SECRET_VAR"}}});
  CHECK(read("pw").value() == "hunter2");
  CHECK(read("empty").message() ==
        "secret 'empty' is empty (file '" + (dir / "empty").string() + "')");
  CHECK(read("gone").message() == "secret 'gone': file '" + (dir / "gone").string() +
                                      "': cannot read file: No such file or directory");
  ::unsetenv("KILN_TEST_SECRET_VAR");
  CHECK(read("var").message() ==
        "secret 'var': the daemon's environment has no KILN_TEST_SECRET_VAR; set it before "
        "starting kiln");
  ::setenv("KILN_TEST_SECRET_VAR", "from-env", 1);
  CHECK(read("var").value() == "from-env");
  CHECK(read("nope").message() == "unknown secret 'nope'; declare it in kiln.toml [secrets]");
  fs::remove_all(dir);
}

TEST_CASE("[executor] mode says which pools run on workers") {
  auto local = ParseDaemonConfig("", "kiln.toml");
  CHECK(local.config.executor_mode == "local");
  CHECK(local.config.worker_pools.empty());
  auto both = ParseDaemonConfig("[executor]\nmode = \"both\"\nworker_pools = [\"gpu\", \"big\"]\n",
                                "kiln.toml");
  CHECK(both.diagnostics.empty());
  CHECK(both.config.executor_mode == "both");
  CHECK(both.config.worker_pools == Strings{"gpu", "big"});
  auto all = ParseDaemonConfig("[executor]\nmode = \"workers\"\n", "kiln.toml");
  CHECK(all.diagnostics.empty());
  CHECK(all.config.executor_mode == "workers");
  CHECK(ConfigErrors("[executor]\nmode = \"remote\"\n") ==
        Strings{"kiln.toml:2:8: executor.mode: unknown mode \"remote\"; expected \"local\", "
                "\"workers\" or \"both\""});
  CHECK(ConfigErrors("[executor]\nmode = \"both\"\n") ==
        Strings{"kiln.toml:2:8: executor.worker_pools: mode \"both\" needs the pools that run on "
                "workers, e.g. worker_pools = [\"gpu\"]"});
  CHECK(ConfigErrors("[executor]\nworker_pools = [\"gpu\", 3]\n") ==
        Strings{"kiln.toml:2:24: executor.worker_pools: expected a string, got an integer"});
  // Pools that would go nowhere, or a list that cannot mean what it says.
  CHECK(ConfigErrors("[executor]\nworker_pools = []\n").empty());  // the docs' example
  CHECK(ConfigErrors("[executor]\nworker_pools = [\"gpu\"]\n") ==
        Strings{"kiln.toml:2:16: executor.worker_pools: used only with mode = \"both\" (mode is "
                "\"local\": every pool runs here); remove it or set mode = \"both\""});
  CHECK(ConfigErrors("[executor]\nmode = \"both\"\nworker_pools = [\"gpu\", \"gpu\"]\n") ==
        Strings{"kiln.toml:3:16: executor.worker_pools: pool 'gpu' is listed twice"});
  CHECK(ConfigErrors("[executor]\nmode = \"both\"\nworker_pools = [\"\"]\n") ==
        Strings{"kiln.toml:3:16: executor.worker_pools: a pool name is empty"});
}

TEST_CASE("the example kiln.toml of docs/configuration.md loads, with the defaults it shows") {
  std::ifstream in(std::filesystem::path(KILN_SOURCE_DIR) / "docs/configuration.md");
  REQUIRE(in);
  std::string line, text;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside && line == "```toml") {
      inside = true;
    } else if (inside && line == "```") {
      break;
    } else if (inside) {
      text += line + "\n";
    }
  }
  const std::string placeholder = "<64 hex digits>";
  REQUIRE(text.find(placeholder) != std::string::npos);
  text.replace(text.find(placeholder), placeholder.size(), std::string(64, 'a'));
  auto parsed = ParseDaemonConfig(text, "/etc/kiln/kiln.toml");
  Strings errors;
  for (const auto& d : parsed.diagnostics) errors.push_back(d.ToString());
  CHECK(errors.empty());
  const DaemonConfig defaults;
  CHECK(parsed.config.max_parallel_tasks == defaults.max_parallel_tasks);
  CHECK(parsed.config.kill_grace == defaults.kill_grace);
  CHECK(parsed.config.catchup_cap == defaults.catchup_cap);
  CHECK(parsed.config.lease == defaults.lease);
  CHECK(parsed.config.data_dir == "/etc/kiln/.kiln");
  CHECK(parsed.config.secrets.size() == 3);
}
