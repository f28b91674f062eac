#include "daemon/wait_probe.h"

#include <httplib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace kiln::daemon {

namespace {

constexpr size_t kMaxBody = 1 << 20;

scheduler::WaitAnswer LookAtFile(const scheduler::WaitProbe& probe) {
  std::filesystem::path path(probe.target);
  if (path.is_relative()) path = probe.dir / path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return {false, std::strerror(errno)};
  if (!S_ISREG(st.st_mode)) return {false, "not a regular file"};
  return {true, "there"};
}

}  // namespace

std::string HttpErrorText(int code) {
  const auto error = static_cast<httplib::Error>(code);
  switch (error) {
    case httplib::Error::Connection:
      return "cannot connect";
    case httplib::Error::ConnectionTimeout:
      return "no connection within 5s";
    case httplib::Error::Read:
      return "no answer (the connection failed or 10s passed)";
    case httplib::Error::Write:
      return "the request could not be sent";
    case httplib::Error::SSLConnection:
    case httplib::Error::SSLServerVerification:
    case httplib::Error::SSLLoadingCerts:
      return "TLS failed (" + httplib::to_string(error) + ")";
    default:
      return httplib::to_string(error);
  }
}

namespace {

scheduler::WaitAnswer LookAtUrl(const std::string& url) {
  // scheme://authority, then the path and query (at least "/").
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return {false, "not a URL"};
  const size_t path_start = url.find('/', scheme_end + 3);
  const std::string origin = url.substr(0, path_start);
  const std::string target = path_start == std::string::npos ? "/" : url.substr(path_start);
  httplib::Client client(origin);
  if (!client.is_valid()) return {false, "not a URL kiln can reach (http:// or https://)"};
  client.set_connection_timeout(std::chrono::seconds(5));
  client.set_read_timeout(std::chrono::seconds(10));
  client.set_write_timeout(std::chrono::seconds(5));
  client.set_follow_location(false);
  int status = 0;
  size_t body = 0;
  auto result = client.Get(
      target, httplib::Headers{{"User-Agent", "kiln-wait"}},
      [&](const httplib::Response& response) {
        status = response.status;
        return true;
      },
      [&](const char*, size_t n) {
        body += n;
        return body <= kMaxBody;  // the answer's code is what counts; a long body is cut
      });
  if (result) status = result->status;
  if (status == 0) return {false, HttpErrorText(static_cast<int>(result.error()))};
  const std::string seen = "HTTP " + std::to_string(status);
  return {status >= 200 && status < 300, seen};
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
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    jobs_.push_back({probe, std::move(done)});
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
    job.done(LookOnce(job.probe));
  }
}

}  // namespace kiln::daemon
