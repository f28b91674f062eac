// Schedules in words, for people: "at 03:00 every day", "every 15 minutes on Monday to Friday".
#include <cstdio>
#include <vector>

#include "dag/cron.h"

namespace kiln::dag {

namespace {

constexpr const char* kWeekdays[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                     "Thursday", "Friday", "Saturday"};
constexpr const char* kMonths[] = {"",        "January",  "February", "March",  "April",
                                   "May",     "June",     "July",     "August", "September",
                                   "October", "November", "December"};

template <size_t N>
std::vector<int> Members(const std::bitset<N>& bits, int first, int last) {
  std::vector<int> out;
  for (int i = first; i <= last; ++i) {
    if (bits[static_cast<size_t>(i)]) out.push_back(i);
  }
  return out;
}

// "a, b and c"; runs of three or more consecutive values as "a to c".
template <typename Name>
std::string List(const std::vector<int>& values, Name name) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < values.size();) {
    size_t j = i;
    while (j + 1 < values.size() && values[j + 1] == values[j] + 1) ++j;
    if (j - i >= 2) {
      parts.push_back(name(values[i]) + " to " + name(values[j]));
    } else {
      for (size_t k = i; k <= j; ++k) parts.push_back(name(values[k]));
    }
    i = j + 1;
  }
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += i + 1 == parts.size() ? " and " : ", ";
    out += parts[i];
  }
  return out;
}

std::string Two(int v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02d", v);
  return buf;
}

std::string Plain(int v) { return std::to_string(v); }

// The step N when `values` are exactly 0, N, 2N, ... below `size` (N > 1); 0 otherwise.
int Step(const std::vector<int>& values, int size) {
  if (values.size() < 2 || values[0] != 0) return 0;
  const int step = values[1];
  if (size % step != 0 || static_cast<int>(values.size()) != size / step) return 0;
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] != static_cast<int>(i) * step) return 0;
  }
  return step;
}

std::string Every(Duration d) {
  const int64_t ms = d.count();
  struct Unit {
    int64_t ms;
    const char* one;
    const char* many;
  };
  for (Unit u : {Unit{86'400'000, "day", "days"}, Unit{3'600'000, "hour", "hours"},
                 Unit{60'000, "minute", "minutes"}, Unit{1000, "second", "seconds"}}) {
    if (ms % u.ms == 0) {
      const int64_t n = ms / u.ms;
      return n == 1 ? std::string("every ") + u.one : "every " + std::to_string(n) + " " + u.many;
    }
  }
  return "every " + std::to_string(ms) + " milliseconds";
}

std::string TimeOfDay(const std::vector<int>& minutes, const std::vector<int>& hours) {
  const bool every_minute = minutes.size() == 60, every_hour = hours.size() == 24;
  if (every_minute && every_hour) return "every minute";
  if (every_hour) {
    if (int step = Step(minutes, 60)) return "every " + std::to_string(step) + " minutes";
    if (minutes.size() == 1 && minutes[0] == 0) return "every hour, on the hour";
    return "every hour at minute" + std::string(minutes.size() > 1 ? "s " : " ") +
           List(minutes, Plain);
  }
  if (every_minute) return "every minute from " + List(hours, Two) + ":00 to :59";
  if (int step = Step(hours, 24); step && minutes.size() == 1) {
    return "every " + std::to_string(step) + " hours" +
           (minutes[0] == 0 ? ", on the hour" : " at minute " + Plain(minutes[0]));
  }
  if (minutes.size() * hours.size() <= 6) {
    std::vector<std::string> times;
    for (int h : hours) {
      for (int m : minutes) times.push_back(Two(h) + ":" + Two(m));
    }
    std::string out = "at ";
    for (size_t i = 0; i < times.size(); ++i) {
      if (i > 0) out += i + 1 == times.size() ? " and " : ", ";
      out += times[i];
    }
    return out;
  }
  std::string at =
      minutes.size() == 1 ? "at minute " + Plain(minutes[0]) : "at minutes " + List(minutes, Plain);
  return at + " of hours " + List(hours, Plain);
}

}  // namespace

std::string DescribeSchedule(const CronSchedule& s) {
  if (s.every) return Every(*s.every);
  const auto minutes = Members(s.minutes, 0, 59), hours = Members(s.hours, 0, 23);
  const auto days = Members(s.days, 1, 31), months = Members(s.months, 1, 12),
             weekdays = Members(s.weekdays, 0, 6);
  auto weekday = [](int d) { return std::string(kWeekdays[d]); };
  auto month = [](int m) { return std::string(kMonths[m]); };
  std::string out = TimeOfDay(minutes, hours);
  const bool by_day = s.days_restricted && days.size() < 31;
  const bool by_weekday = s.weekdays_restricted && weekdays.size() < 7;
  const bool by_month = months.size() < 12;
  if (by_day && by_month && days.size() == 1 && months.size() == 1 && !by_weekday) {
    return out + " on " + month(months[0]) + " " + Plain(days[0]);
  }
  std::string when;
  if (by_day) {
    when =
        " on day" + std::string(days.size() > 1 ? "s " : " ") + List(days, Plain) + " of the month";
  }
  if (by_weekday) when += (by_day ? " and on " : " on ") + List(weekdays, weekday);
  if (when.empty() && !by_month && (hours.size() < 24 || minutes.size() < 60) &&
      out.starts_with("at ")) {
    when = " every day";
  }
  out += when;
  if (by_month) out += " in " + List(months, month);
  return out;
}

}  // namespace kiln::dag
