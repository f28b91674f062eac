#include "dag/shell_scripts.h"

#include <algorithm>
#include <initializer_list>

namespace kiln::dag {

namespace {

std::string_view ProgramName(std::string_view word) { return word.substr(word.rfind('/') + 1); }

// Where the shell that argv[first] names is handed its script (`sh -c SCRIPT`,
// `bash -euo pipefail -c SCRIPT`): its index, or argv's size when it is not. The script is the
// first word that is not an option once a `c` option was seen; `o`, `O` and a few long options
// take the next word.
size_t ShellScriptAt(const std::vector<std::string>& argv, size_t first) {
  static constexpr std::string_view kShells[] = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash"};
  if (std::find(std::begin(kShells), std::end(kShells), ProgramName(argv[first])) ==
      std::end(kShells)) {
    return argv.size();
  }
  bool command = false;
  for (size_t i = first + 1; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (word == "--" || word == "-") {
      return command && i + 1 < argv.size() ? i + 1 : argv.size();
    }
    if (word.starts_with("--")) {
      if (word == "--rcfile" || word == "--init-file") ++i;
      continue;
    }
    if (word.size() >= 2 && (word[0] == '-' || word[0] == '+')) {
      for (char flag : word.substr(1)) {
        if (flag == 'c' && word[0] == '-') command = true;
        if (flag == 'o' || flag == 'O') ++i;  // its name is the next word
      }
      continue;
    }
    return command ? i : argv.size();
  }
  return argv.size();
}

bool Among(std::string_view name, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

// A program that runs the program a later word of its names, with the words after that: its
// options taking a value, and how many words it takes before that program.
struct Wrapper {
  std::string_view name;
  std::vector<std::string_view> valued;  // options whose value is the next word
  int positional;                        // words that are not options, before it
};
const std::vector<Wrapper>& Wrappers() {
  static const std::vector<Wrapper> wrappers = {
      {"env", {"-u", "--unset", "-C", "--chdir"}, 0},
      {"timeout", {"-s", "--signal", "-k", "--kill-after"}, 1},
      {"nice", {"-n", "--adjustment"}, 0},
      {"nohup", {}, 0},
      {"setsid", {}, 0},
      {"stdbuf", {"-i", "-o", "-e", "--input", "--output", "--error"}, 0},
      {"ionice", {"-c", "--class", "-n", "--classdata", "-p", "-P", "-u"}, 0},
      {"chrt", {}, 1},
      {"sudo",
       {"-u", "--user",       "-g", "--group",           "-h", "--host",   "-p", "--prompt",
        "-C", "--close-from", "-D", "--chdir",           "-r", "--role",   "-t", "--type",
        "-U", "--other-user", "-T", "--command-timeout", "-R", "--chroot", "-c", "--login-class",
        "-a", "--auth-type"},
       0},
      {"doas", {"-u", "-C"}, 0},
      // -i, -l and --max-lines take a value only when it is in the same word.
      {"xargs",
       {"-I", "-n", "-P", "-d", "-E", "-L", "-s", "-a", "--arg-file", "--delimiter", "--max-args",
        "--max-procs", "--max-chars"},
       0},
      {"time", {"-f", "--format", "-o", "--output"}, 0},
      {"chroot", {"--userspec", "--groups"}, 1},
      {"runuser",
       {"-u", "--user", "-g", "--group", "-G", "--supp-group", "-w", "--whitelist-environment"},
       0},
  };
  return wrappers;
}

// Whether option `word` of `wrapper` takes the next word as its value: named in full, or as the
// last letter of a group of short options (`sudo -iu alice`).
bool TakesValue(const Wrapper& wrapper, const std::string& word) {
  auto valued = [&](std::string_view option) {
    return std::find(wrapper.valued.begin(), wrapper.valued.end(), option) != wrapper.valued.end();
  };
  if (valued(word)) return true;
  return word.size() > 2 && word[1] != '-' && valued(std::string{'-', word.back()});
}

// The program the wrapper at argv[at] runs: its index, or argv's size.
size_t WrappedProgram(const std::vector<std::string>& argv, size_t at, const Wrapper& wrapper) {
  int positional = wrapper.positional;
  for (size_t i = at + 1; i < argv.size(); ++i) {
    const std::string& word = argv[i];
    if (word == "--") return i + 1;
    if (word.size() > 1 && word[0] == '-') {
      if (TakesValue(wrapper, word)) ++i;
      continue;
    }
    if ((wrapper.name == "env" || wrapper.name == "sudo") && word.find('=') != std::string::npos) {
      continue;  // NAME=VALUE
    }
    if (positional-- > 0) continue;
    return i;
  }
  return argv.size();
}

// Where the command option of a program that hands its command to a shell is in argv[i]
// (`-c CMD`, `-lc CMD`, `-cCMD`, `--command=CMD`, `--session-command CMD`): its index, or
// argv's size when argv[i] is another word.
size_t CommandOption(const std::vector<std::string>& argv, size_t i) {
  const std::string& word = argv[i];
  if (word == "--command" || word == "--session-command") return i + 1;
  if (word.starts_with("--command=") || word.starts_with("--session-command=")) return i;
  if (word.size() < 2 || word[0] != '-' || word[1] == '-') return argv.size();
  const size_t c = word.find('c');
  if (c == std::string::npos) return argv.size();
  return c + 1 == word.size() ? i + 1 : i;
}

// Marks in `script` the words of argv that a shell runs as a script when the program is
// argv[at]: a shell's `-c` script, the command of `su`, `runuser`, `script` and `flock` (which
// hand theirs to a shell), and these in the program a wrapper runs (`env`, `timeout 5`,
// `sudo -iu alice`, `xargs`, `runuser -u app --`, `flock FILE`, ...), wrappers of wrappers too.
void MarkScripts(const std::vector<std::string>& argv, size_t at, std::vector<bool>& script) {
  while (at < argv.size()) {
    const std::string_view name = ProgramName(argv[at]);
    const bool runs_as_user =
        name == "runuser" && std::any_of(argv.begin() + at, argv.end(), [](const std::string& w) {
          return w == "-u" || w == "--user" || w.starts_with("--user=");
        });
    if (name == "su" || name == "script" || (name == "runuser" && !runs_as_user)) {
      // Every later word is theirs (or their shell's, which runs a `-c` script too).
      for (size_t i = at + 1; i < argv.size(); ++i) {
        if (const size_t command = CommandOption(argv, i); command < argv.size()) {
          script[command] = true;
        }
      }
      return;
    }
    if (name == "flock") {
      size_t i = at + 1;
      for (; i < argv.size() && argv[i].size() > 1 && argv[i][0] == '-'; ++i) {  // its options
        if (Among(argv[i], {"-w", "--wait", "--timeout", "-E", "--conflict-exit-code"})) ++i;
      }
      if (++i >= argv.size()) return;  // past the lock's file: `-c COMMAND`, or a program
      if (argv[i] == "-c" || argv[i] == "--command") {
        if (i + 1 < argv.size()) script[i + 1] = true;
        return;
      }
      at = i;
      continue;
    }
    const auto& wrappers = Wrappers();
    const auto wrapper = std::find_if(wrappers.begin(), wrappers.end(),
                                      [&](const Wrapper& w) { return w.name == name; });
    if (wrapper != wrappers.end()) {
      at = WrappedProgram(argv, at, *wrapper);
      continue;
    }
    if (const size_t command = ShellScriptAt(argv, at); command < argv.size()) {
      script[command] = true;
    }
    return;
  }
}

}  // namespace

// What MarkScripts finds from the program, and the script after any later shell's name and its
// `-c` (`docker exec C sh -c SCRIPT`, `find . -exec sh -c SCRIPT`). A shell's name as a plain
// argument, or as the `$0` after a script, is followed by no `-c` and marks nothing.
std::vector<bool> ShellScripts(const std::vector<std::string>& argv) {
  std::vector<bool> script(argv.size(), false);
  if (argv.empty()) return script;
  MarkScripts(argv, 0, script);
  for (size_t i = 1; i < argv.size(); ++i) {
    if (const size_t command = ShellScriptAt(argv, i); command < argv.size()) {
      script[command] = true;
    }
  }
  return script;
}

bool NamesOutsideValue(std::string_view text) {
  for (size_t at = text.find("{{"); at != std::string_view::npos; at = text.find("{{", at + 2)) {
    size_t name = text.find_first_not_of(" \t", at + 2);
    if (name == std::string_view::npos) break;
    const std::string_view rest = text.substr(name);
    if (rest.starts_with("params.") || rest.starts_with("item")) return true;
  }
  return false;
}

}  // namespace kiln::dag
