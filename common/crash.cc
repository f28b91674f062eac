#include "common/crash.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace kiln {

namespace {

struct Target {
  std::string point;
  int nth = 1;
};

const Target* ReadTarget() {
  const char* env = std::getenv("KILN_CRASH_AT");
  if (env == nullptr || *env == '\0') return nullptr;
  auto* t = new Target;
  std::string text = env;
  if (size_t colon = text.find(':'); colon != std::string::npos) {
    t->nth = std::max(1, std::atoi(text.c_str() + colon + 1));
    text.resize(colon);
  }
  t->point = text;
  return t;
}

const Target* TargetOnce() {
  static const Target* target = ReadTarget();
  return target;
}

}  // namespace

bool CrashPointArmed(std::string_view point) {
  const Target* target = TargetOnce();
  return target != nullptr && target->point == point;
}

void CrashPoint(std::string_view point) {
  const Target* target = TargetOnce();
  static std::atomic<int> hits{0};
  if (target == nullptr || target->point != point) return;
  if (hits.fetch_add(1) + 1 == target->nth) {
    ::kill(::getpid(), SIGKILL);
    ::pause();
  }
}

}  // namespace kiln
