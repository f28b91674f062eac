#include "daemon/wait_probe.h"

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "daemon/as_user.h"
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
