// `kiln serve`: the daemon's configuration from kiln.toml and the flags; daemon/ does the rest.
#include "cli/commands.h"
#include "cli/config_util.h"
#include "daemon/daemon.h"

namespace kiln::cli {

int Serve(const ServeOptions& o) {
  auto cfg = LoadConfig(o.config);
  if (!cfg) return 1;
  if (!o.data_dir.empty()) cfg->data_dir = o.data_dir;
  if (!o.pipelines.empty()) cfg->pipelines_dir = o.pipelines;
  if (!o.listen.empty()) cfg->listen = o.listen;
  return daemon::Serve(*cfg);
}

}  // namespace kiln::cli
