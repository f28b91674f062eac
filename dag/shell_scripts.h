// Where a task's argv hands a shell a script, and whether a template names a value someone other
// than the pipeline's author chose: a param or an item there would be shell code, not a word
// (validate.cc refuses it). Pure functions of the words.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kiln::dag {

// For each word of argv, whether a shell runs it as a script: after a shell's `-c` (`sh -c`,
// `bash -euo pipefail -c`), wherever the shell's name comes in argv; and the command of `su`,
// `runuser`, `script` and `flock FILE`, also when such a program is started through a wrapper
// (`env`, `timeout 5`, `sudo -iu alice`, `xargs`, `runuser -u app --`, ...) with its options.
std::vector<bool> ShellScripts(const std::vector<std::string>& argv);

// Whether `text` has a template naming a param (the trigger's) or an item (a file a task may
// have written).
bool NamesOutsideValue(std::string_view text);

}  // namespace kiln::dag
