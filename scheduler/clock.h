#pragma once

#include "common/time.h"

namespace kiln::scheduler {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Instant Now() = 0;
};

// The system clock.
class SystemClock final : public Clock {
 public:
  Instant Now() override { return NowUtc(); }
};

}  // namespace kiln::scheduler
