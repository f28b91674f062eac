#include "dag/template.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

using kiln::dag::CheckTemplate;
using kiln::dag::Quoting;
using kiln::dag::Render;
using kiln::dag::ShellQuote;
using kiln::dag::TemplateValues;

namespace {

namespace fs = std::filesystem;

const std::set<std::string> kKnown = {"params.epochs", "params.x", "run.dir", "run.id"};

// Values that try to add shell syntax of every kind.
const std::vector<std::string> kHostile = {
    "$(touch pwned)",
    "'; touch pwned; echo '",
    "`touch pwned`",
    "a\ntouch pwned\n",
    "\"; touch pwned; echo \"",
    "it's",
    "\\'; touch pwned #",
    "$HOME ${HOME} * ? [a] ~ & | ; < > ( ) { } !",
    "\\",
    "$'\\x27'; touch pwned; $'",
    "",
};

// Runs `command` with /bin/sh -c (as the executor does: one argv item, no further shell) in a
// fresh temporary folder; returns its standard output and whether a file "pwned" appeared there.
struct ShellRun {
  std::string output;
  bool pwned = false;
};

ShellRun RunShell(const std::string& command, const char* shell = "/bin/sh") {
  std::string dir_template = (fs::temp_directory_path() / "kiln-template-XXXXXX").string();
  REQUIRE(mkdtemp(dir_template.data()) != nullptr);
  const fs::path dir = dir_template;
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    const int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, STDERR_FILENO);  // syntax errors of unterminated quotes are expected
    close(fds[0]);
    close(fds[1]);
    if (chdir(dir.c_str()) != 0) _exit(127);
    execl(shell, shell, "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  ShellRun run;
  std::array<char, 4096> buffer{};
  ssize_t n = 0;
  while ((n = read(fds[0], buffer.data(), buffer.size())) > 0) {
    run.output.append(buffer.data(), static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  run.pwned = fs::exists(dir / "pwned");
  fs::remove_all(dir);
  return run;
}

std::string RenderShell(const std::string& text, const std::string& value) {
  auto rendered = Render(text, {{"params.x", value}}, Quoting::kShell);
  REQUIRE(rendered.ok());
  return *rendered;
}

}  // namespace

TEST_CASE("ShellQuote single-quotes every value") {
  CHECK(ShellQuote("abc") == "'abc'");
  CHECK(ShellQuote("") == "''");
  CHECK(ShellQuote("it's") == "'it'\\''s'");
  CHECK(ShellQuote("$(touch pwned)") == "'$(touch pwned)'");
  CHECK(ShellQuote("a\nb") == "'a\nb'");
}

TEST_CASE("template names are the built-in ones and the declared params") {
  kiln::dag::PipelineSpec spec;
  spec.params.push_back({"min_auc", 0.85, {}});
  spec.params.push_back({"dataset", std::string("x.csv"), {}});
  const std::set<std::string> expected = {
      "params.dataset",          "params.min_auc", "pipeline.name", "run.data_interval_end",
      "run.data_interval_start", "run.dir",        "run.id",        "run.logical_date",
      "run.triggered_by",        "task.attempt",   "task.id"};
  CHECK(kiln::dag::TemplateNames(spec) == expected);
}

TEST_CASE("CheckTemplate reports unknown names, unclosed and empty references") {
  CHECK(CheckTemplate("python3 train.py --epochs {{ params.epochs }} {{run.id}}", kKnown).empty());
  CHECK(CheckTemplate("no templates at all } { }}", kKnown).empty());
  CHECK(CheckTemplate("--epochs {{ params.epoch }}", kKnown) ==
        std::vector<std::string>{
            "unknown template name 'params.epoch' (known: params.epochs, params.x, run.dir, "
            "run.id)"});
  CHECK(CheckTemplate("echo {{ run.id", kKnown) ==
        std::vector<std::string>{"'{{' at position 6 has no closing '}}'"});
  CHECK(CheckTemplate("echo {{  }}", kKnown) ==
        std::vector<std::string>{
            "empty template name at position 6; expected e.g. {{ params.NAME }}"});
  CHECK(CheckTemplate("{{ a }} {{ run.id }} {{ b }}", kKnown).size() == 2);
}

TEST_CASE("Render substitutes names with or without spaces inside the braces") {
  const TemplateValues values = {{"params.epochs", "10"}, {"run.dir", "/runs/7"}};
  CHECK(*Render("--epochs {{params.epochs}} --out {{ run.dir }}/x", values, Quoting::kNone) ==
        "--epochs 10 --out /runs/7/x");
  CHECK(*Render("--epochs {{ params.epochs }}", values, Quoting::kShell) == "--epochs '10'");
  CHECK(*Render("plain", values, Quoting::kShell) == "plain");
  auto unknown = Render("{{ params.epoch }}", values, Quoting::kNone);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.message() ==
        "unknown template name 'params.epoch' (known: params.epochs, run.dir)");
  CHECK_FALSE(Render("{{ run.dir", values, Quoting::kNone).ok());
}

TEST_CASE("argv and env values are substituted byte for byte") {
  for (const std::string& value : kHostile) {
    CHECK(*Render("{{ params.x }}", {{"params.x", value}}, Quoting::kNone) == value);
    CHECK(*Render("--in={{ params.x }}.csv", {{"params.x", value}}, Quoting::kNone) ==
          "--in=" + value + ".csv");
  }
}

TEST_CASE("hostile values in a command reach the program as literal bytes") {
  for (const std::string& value : kHostile) {
    INFO("value: " << value);
    const std::string command = RenderShell("printf %s {{ params.x }}", value);
    CHECK(command == "printf %s " + ShellQuote(value));
    const ShellRun run = RunShell(command);
    CHECK(run.output == value);
    CHECK_FALSE(run.pwned);
  }
}

TEST_CASE("values inside the author's quotes are quoted for those quotes") {
  CHECK(RenderShell("echo 'a{{ params.x }}b'", "it's") == "echo 'a''it'\\''s''b'");
  CHECK(RenderShell("echo \"a{{ params.x }}b\"", "$(x)") == "echo \"a\"'$(x)'\"b\"");
  for (const std::string& value : kHostile) {
    INFO("value: " << value);
    for (const std::string text :
         {"printf %s '{{ params.x }}'", "printf %s \"{{ params.x }}\"",
          "printf %s \"<{{ params.x }}>\"", "printf %s '<'{{ params.x }}\">\"",
          "printf %s {{ params.x }}{{ params.x }}", "v={{ params.x }}; printf %s \"$v\""}) {
      const std::string command = RenderShell(text, value);
      INFO("command: " << command);
      const ShellRun run = RunShell(command);
      const bool twice = text.find("}}{{") != std::string::npos;
      const bool angled = text.find('<') != std::string::npos;
      CHECK(run.output == (twice ? value + value : angled ? "<" + value + ">" : value));
      CHECK_FALSE(run.pwned);
    }
  }
}

TEST_CASE("a command reference where quoting cannot be safe is refused") {
  auto refused = [](const std::string& text) {
    auto r = Render(text, {{"params.x", "v"}}, Quoting::kShell);
    return r.ok() ? std::string("accepted: ") + *r : r.message();
  };
  CHECK(refused("echo $(cat {{ params.x }})") ==
        "cannot quote {{ params.x }} at position 12 inside a command substitution $(...); use "
        "it as a plain word, or in '...' or \"...\", e.g. assign v={{ params.x }} first and use "
        "\"$v\" there");
  CHECK(refused("echo `cat {{ params.x }}`").find("inside a command substitution `...`") !=
        std::string::npos);
  CHECK(refused("echo \"$(echo \"{{ params.x }}\")\"").find("inside a command substitution $(") !=
        std::string::npos);
  CHECK(refused("echo ${HOME:-{{ params.x }}}").find("inside a parameter expansion ${...}") !=
        std::string::npos);
  CHECK(refused("echo $(( {{ params.x }} + 1 ))").find("inside an arithmetic expansion") !=
        std::string::npos);
  CHECK(refused("true # {{ params.x }}").find("inside a shell comment") != std::string::npos);
  CHECK(refused("cat <<EOF\n{{ params.x }}\nEOF\n").find("inside a here-document") !=
        std::string::npos);
  CHECK(refused("cat <<{{ params.x }}").find("as a here-document delimiter") != std::string::npos);
  CHECK(refused("echo \\{{ params.x }}").find("right after a backslash") != std::string::npos);
  CHECK(refused("echo ${{ params.x }}").find("right after '$'") != std::string::npos);
  CHECK(refused("echo $'{{ params.x }}'").find("inside $'...'") != std::string::npos);
  CHECK(refused("echo $'a\\'' {{ params.x }}").find("after \\' inside $'...'") !=
        std::string::npos);
  CHECK(refused("x=$(case a in a) echo;; esac); echo {{ params.x }}")
            .find("after a 'case' inside $(...)") != std::string::npos);
}

TEST_CASE("shell syntax around references is followed to where it ends") {
  auto ok = [](const std::string& text) {
    return Render(text, {{"params.x", "v"}}, Quoting::kShell).ok();
  };
  CHECK(ok("echo $(date) {{ params.x }}"));
  CHECK(ok("echo \"$(echo \")\")\" {{ params.x }}"));
  CHECK(ok("echo $((1 + (2 * 3))) {{ params.x }}"));
  CHECK(ok("echo ${HOME} `date` {{ params.x }}"));
  CHECK(ok("true # comment\necho {{ params.x }}"));
  CHECK(ok("echo a#b {{ params.x }}"));
  CHECK(ok("cat <<-'EOF'\n\tbody\n\tEOF\necho {{ params.x }}"));
  CHECK(ok("echo '$(' {{ params.x }}"));
  CHECK(ok("echo \\$( {{ params.x }}"));
  CHECK(ok("cat <<< {{ params.x }}"));
  CHECK(ok("echo \"${HOME:-'}\" {{ params.x }}"));
  CHECK(ok("echo ${HOME:-\"}\"} '{{ params.x }}'"));
  CHECK(ok("echo ${HOME:-'}'} \"{{ params.x }}\""));
  CHECK(ok("echo $'a' {{ params.x }}"));
}

TEST_CASE("a here-document body does not end at a line that only starts like its delimiter") {
  auto r = Render("cat <<EOF\nEOFX\n{{ params.x }}\nEOF\n", {{"params.x", "v"}}, Quoting::kShell);
  CHECK_FALSE(r.ok());
}

TEST_CASE("the shell harness notices a created file") {
  CHECK(RunShell("touch pwned").pwned);
  CHECK(RunShell("printf %s 'a\nb'").output == "a\nb");
}

TEST_CASE("no accepted command lets a hostile value run anything") {
  const std::vector<std::string> templates = {
      "echo \"$(echo hi)\" '{{ params.x }}'",
      "echo \"${HOME}\" \"{{ params.x }}\"",
      "echo \\\"{{ params.x }}\\\"",
      "echo \"it's\" {{ params.x }} 'a\"b' \"{{ params.x }}\"",
      "echo '{{ params.x }}",
      "echo \"{{ params.x }}",
      "x={{ params.x }} y=\"{{ params.x }}\"; echo \"$x$y\"",
      "case {{ params.x }} in a) echo a;; *) echo b;; esac",
      "for i in {{ params.x }} '{{ params.x }}'; do echo \"$i\"; done",
      "echo `echo a` $(echo \")\") {{ params.x }} # {{ run.id }}",
      "cat <<EOF\nbody\nEOF\necho {{ params.x }}",
      "echo a\\\n{{ params.x }}",
      "[ -n \"{{ params.x }}\" ] && echo {{ params.x }}>/dev/null",
      "echo $((1+2)){{ params.x }}",
      "echo ${#HOME}{{ params.x }}",
      "(echo {{ params.x }}) | cat",
      "echo \"${HOME:-'}\" \"{{ params.x }}\" ${HOME:-'}'} '{{ params.x }}'",
      "echo $'\\\\' {{ params.x }}",
      "cat <<< {{ params.x }}",
  };
  for (const std::string& text : templates) {
    for (const std::string& value : kHostile) {
      auto rendered = Render(text, {{"params.x", value}, {"run.id", value}}, Quoting::kShell);
      INFO("template: " << text << "\nvalue: " << value);
      if (!rendered.ok()) {
        INFO(rendered.message());
        CHECK(text.find('#') != std::string::npos);  // only the comment case is refused here
        continue;
      }
      CHECK_FALSE(RunShell(*rendered).pwned);
      // /bin/sh is dash on Debian but bash elsewhere, which reads more syntax ($'...').
      if (fs::exists("/bin/bash")) CHECK_FALSE(RunShell(*rendered, "/bin/bash").pwned);
    }
  }
}
