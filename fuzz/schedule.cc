// Schedules: cron expressions, presets and `every` intervals in a zone, and their next and
// previous fires, and the schedule in words. Input: a byte choosing the zone, eight bytes of
// instant, the expression.
#include "dag/schedule.h"

#include <array>
#include <cstring>

#include "fuzz/check.h"

namespace {

constexpr std::array<const char*, 6> kZones = {
    "UTC",          "Europe/Berlin",  "America/New_York", "Australia/Lord_Howe",
    "Asia/Kolkata", "Pacific/Chatham"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, size_t size) {
  using kiln::fuzz::Check;
  if (size < 9) return 0;
  const char* zone = kZones[data[0] % kZones.size()];
  uint64_t raw = 0;
  std::memcpy(&raw, data + 1, sizeof raw);
  // Between 1970 and about 2106, in milliseconds.
  const kiln::Instant t{std::chrono::milliseconds(static_cast<int64_t>(raw % (1ull << 42)))};
  auto schedule = kiln::dag::MakeSchedule(kiln::fuzz::Text(data + 9, size - 9), zone);
  if (!schedule.ok()) {
    Check(!schedule.message().empty(), "a refused expression says why");
    return 0;
  }
  const std::string words = kiln::dag::DescribeSchedule(schedule->cron);
  Check(words.starts_with("at ") || words.starts_with("every "), "a schedule reads in words");
  auto next = kiln::dag::NextFire(*schedule, t);
  if (!next) return 0;
  Check(*next > t, "the next fire is after the instant");
  Check(kiln::dag::NextFire(*schedule, t + (*next - t) / 2) == next,
        "the next fire is the same from any instant before it");
  auto prev = kiln::dag::PrevFire(*schedule, *next);
  if (prev) {
    Check(*prev < *next, "the previous fire is before");
    Check(kiln::dag::NextFire(*schedule, *prev) == next, "no fire between previous and next");
  }
  Check(!kiln::dag::FormatInZone(*next, schedule->zone).empty(), "a fire can be shown");
  return 0;
}
