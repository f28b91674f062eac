#include "daemon/wait_probe.h"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "daemon/http_out.h"

namespace kiln::daemon {

namespace {

scheduler::WaitAnswer LookAtFile(const scheduler::WaitProbe& probe) {
  std::filesystem::path path(probe.target);
  if (path.is_relative()) path = probe.dir / path;
  struct stat st;
  int rc = -1, err = EPERM;
  if (!AsUser(probe.user, [&] {
        rc = ::stat(path.c_str(), &st);
        err = errno;
      })) {
    return {false, "cannot look as user " + std::to_string(probe.user.uid)};
  }
  if (rc != 0) return {false, std::strerror(err)};
  if (!S_ISREG(st.st_mode)) return {false, "not a regular file"};
  return {true, "there"};
}

scheduler::WaitAnswer LookAtUrl(const std::string& url) {
  HttpOut request;
  request.url = url;
  request.headers = {{"User-Agent", "kiln-wait"}};
  const HttpAnswer answer = SendHttp(request);
  if (answer.status == 0) return {false, answer.error};
  return {answer.status >= 200 && answer.status < 300, "HTTP " + std::to_string(answer.status)};
}

}  // namespace

bool AsUser(const Identity& user, const std::function<void()>& f) {
  if (!user.switch_user) {
    f();
    return true;
  }
  // Raw system calls: glibc's setgroups would change every thread of the process.
  const int count = ::getgroups(0, nullptr);
  std::vector<gid_t> own(count > 0 ? static_cast<size_t>(count) : 0);
  if (count > 0 && ::getgroups(count, own.data()) != count) return false;
  const std::vector<gid_t> groups =
      user.groups.empty() ? std::vector<gid_t>{user.gid} : user.groups;
  if (::syscall(SYS_setgroups, groups.size(), groups.data()) != 0) return false;
  ::syscall(SYS_setfsgid, user.gid);
  ::syscall(SYS_setfsuid, user.uid);
  // setfsuid says nothing of failure: asking again (with an id it refuses) returns the current.
  const bool taken =
      ::syscall(SYS_setfsuid, static_cast<uid_t>(-1)) == static_cast<long>(user.uid) &&
      ::syscall(SYS_setfsgid, static_cast<gid_t>(-1)) == static_cast<long>(user.gid);
  if (taken) f();
  ::syscall(SYS_setfsuid, ::geteuid());
  ::syscall(SYS_setfsgid, ::getegid());
  ::syscall(SYS_setgroups, own.size(), own.data());
  return taken;
}

scheduler::WaitAnswer LookOnce(const scheduler::WaitProbe& probe) {
  if (probe.what == "file") return LookAtFile(probe);
  if (probe.what == "http") return LookAtUrl(probe.target);
  return {false, "cannot look at '" + probe.what + "'"};
}

WaitProber::WaitProber(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
}

WaitProber::~WaitProber() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WaitProber::Probe(const scheduler::WaitProbe& probe,
                       std::function<void(scheduler::WaitAnswer)> done) {
  Run([probe, done = std::move(done)] { done(LookOnce(probe)); });
}

void WaitProber::Run(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
}

void WaitProber::Work() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace kiln::daemon
