// A kind's report beside its run: <run folder>/.kiln/<task>/<name>. The run folder is the tasks'
// own, so an earlier task of the run may have planted links there: no link is followed.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "plugins/fd.h"
#include "plugins/kinds.h"

namespace kiln::plugins {

namespace {

// The folder `name` in `parent`, made when missing; never through a link.
int OpenDir(int parent, const char* name) {
  if (::mkdirat(parent, name, 0700) != 0 && errno != EEXIST) return -1;
  return ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

Status Failed(const std::string& what) { return Status::Error(what + ": " + std::strerror(errno)); }

}  // namespace

Status WriteReport(const TaskContext& ctx, const std::string& name, const std::string& text) {
  if (ctx.run_dir.empty() || ctx.task_id.empty()) return Status::Ok();
  const std::string where = (ctx.run_dir / ".kiln" / ctx.task_id / name).string();
  Fd run(::open(ctx.run_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (run.get() < 0) return Failed("cannot write " + where);
  Fd kiln(OpenDir(run.get(), ".kiln"));
  if (kiln.get() < 0) return Failed("cannot write " + where);
  Fd task(OpenDir(kiln.get(), ctx.task_id.c_str()));
  if (task.get() < 0) return Failed("cannot write " + where);
  const std::string tmp = "." + name + ".tmp";
  ::unlinkat(task.get(), tmp.c_str(), 0);
  Fd out(::openat(task.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600));
  if (out.get() < 0) return Failed("cannot write " + where);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(out.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Failed("cannot write " + where);
    done += static_cast<size_t>(n);
  }
  // rename replaces a link planted at `name` itself, never what it points to.
  if (::renameat(task.get(), tmp.c_str(), task.get(), name.c_str()) != 0) {
    return Failed("cannot write " + where);
  }
  return Status::Ok();
}

}  // namespace kiln::plugins
