// `kiln serve`: the daemon's configuration from kiln.toml and the flags; daemon/ does the rest.
#include "cli/commands.h"
#include "cli/config_util.h"
#include "daemon/daemon.h"

namespace kiln::cli {

namespace {

// kiln.toml, the environment and the flags, in that order; again the same way at each reload.
config::DaemonConfigResult Read(const ServeOptions& o) {
  auto read = ReadConfig(o.config);
  if (!o.data_dir.empty()) read.config.data_dir = o.data_dir;
  if (!o.pipelines.empty()) read.config.pipelines_dir = o.pipelines;
  if (!o.listen.empty()) read.config.listen = o.listen;
  return read;
}

}  // namespace

int Serve(const ServeOptions& o) {
  auto read = Read(o);
  if (!read.diagnostics.empty()) {
    PrintDiagnostics(read.diagnostics);
    return 1;
  }
  return daemon::Serve(read.config, {o.config, [o] { return Read(o); }});
}

}  // namespace kiln::cli
