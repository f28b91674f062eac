#include "dag/cron.h"

#include <array>
#include <cctype>
#include <vector>

namespace kiln::dag {

namespace {

struct Field {
  std::string_view name;
  int min;
  int max;
  const std::array<std::string_view, 12>* names;  // names[i] is value min + i (or nullptr)
};

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 12> kDayNames = {"sun", "mon", "tue", "wed", "thu", "fri",
                                                        "sat", "",    "",    "",    "",    ""};

// Day of week accepts 0-7 (7 is Sunday again, as in Vixie cron).
constexpr Field kFields[] = {
    {"minute", 0, 59, nullptr},        {"hour", 0, 23, nullptr},
    {"day-of-month", 1, 31, nullptr},  {"month", 1, 12, &kMonthNames},
    {"day-of-week", 0, 7, &kDayNames},
};

constexpr std::pair<std::string_view, std::string_view> kPresets[] = {
    {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

Status Error(std::string message) {
  return Status::Error(ErrorCode::kInvalidArgument, std::move(message));
}

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A number or (where the field has them) a name.
Result<int> Value(const Field& f, std::string_view text) {
  if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0]))) {
    int v = 0;
    for (char c : text) {
      if (!std::isdigit(static_cast<unsigned char>(c)) || v > 1000) {
        return Error(std::string(f.name) + " field '" + std::string(text) + "' is not a number");
      }
      v = v * 10 + (c - '0');
    }
    if (v < f.min || v > f.max) {
      return Error(std::string(f.name) + " field '" + std::string(text) + "' out of range " +
                   std::to_string(f.min) + "-" + std::to_string(f.max));
    }
    return v;
  }
  if (f.names) {
    std::string lower = Lower(text);
    for (size_t i = 0; i < f.names->size(); ++i) {
      if (!(*f.names)[i].empty() && (*f.names)[i] == lower) return f.min + static_cast<int>(i);
    }
  }
  std::string accepted = std::to_string(f.min) + "-" + std::to_string(f.max);
  if (f.names == &kMonthNames) accepted += " or jan-dec";
  if (f.names == &kDayNames) accepted += " or sun-sat";
  return Error(std::string(f.name) + " field '" + std::string(text) + "' is not " + accepted);
}

// One comma-separated item: *, */n, a, a-b, a-b/n, a/n.
Status Item(const Field& f, std::string_view item, std::vector<bool>& set) {
  int step = 1;
  if (auto slash = item.find('/'); slash != std::string_view::npos) {
    std::string_view s = item.substr(slash + 1);
    if (s.empty() || s.size() > 3 || s.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoi(std::string(s)) == 0) {
      return Error(std::string(f.name) + " field '" + std::string(item) +
                   "': the step after '/' must be a number from 1");
    }
    step = std::stoi(std::string(s));
    item = item.substr(0, slash);
  }
  int lo = f.min, hi = f.max;
  if (item != "*") {
    auto dash = item.find('-');
    auto first = Value(f, item.substr(0, dash));
    if (!first.ok()) return first.status();
    lo = *first;
    hi = step > 1 ? f.max : lo;  // "a/n" runs from a to the end
    if (dash != std::string_view::npos) {
      auto last = Value(f, item.substr(dash + 1));
      if (!last.ok()) return last.status();
      hi = *last;
      if (hi < lo) {
        return Error(std::string(f.name) + " field '" + std::string(item) +
                     "': a range must go upwards");
      }
    }
  }
  for (int v = lo; v <= hi; v += step) set[static_cast<size_t>(v)] = true;
  return Status::Ok();
}

Result<std::vector<bool>> ParseField(const Field& f, std::string_view text) {
  std::vector<bool> set(static_cast<size_t>(f.max) + 1, false);
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view item =
        text.substr(start, comma == std::string_view::npos ? comma : comma - start);
    if (item.empty()) {
      return Error(std::string(f.name) + " field '" + std::string(text) + "' has an empty item");
    }
    if (Status s = Item(f, item, set); !s.ok()) return s;
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return set;
}

template <size_t N>
std::bitset<N> Bits(const std::vector<bool>& set) {
  std::bitset<N> bits;
  for (size_t i = 0; i < N && i < set.size(); ++i) bits[i] = set[i];
  return bits;
}

constexpr std::array<int, 13> kMaxDays = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
constexpr std::array<std::string_view, 13> kMonthTitles = {
    "",     "January", "February",  "March",   "April",    "May",     "June",
    "July", "August",  "September", "October", "November", "December"};

// With only day-of-month restricted, some chosen month must have some chosen day.
Status CheckFires(const CronSchedule& c) {
  if (!c.days_restricted || c.weekdays_restricted) return Status::Ok();
  int first_day = 0;
  for (int d = 1; d <= 31; ++d) {
    if (c.days[static_cast<size_t>(d)]) {
      first_day = d;
      break;
    }
  }
  std::string months;
  for (int m = 1; m <= 12; ++m) {
    if (!c.months[static_cast<size_t>(m)]) continue;
    if (first_day <= kMaxDays[static_cast<size_t>(m)]) return Status::Ok();
    months += (months.empty() ? "" : " or ") + std::string(kMonthTitles[static_cast<size_t>(m)]);
  }
  return Error("never fires: day " + std::to_string(first_day) + " never occurs in " + months);
}

}  // namespace

Result<CronSchedule> ParseSchedule(std::string_view text) {
  std::string_view trimmed = text;
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.front())))
    trimmed.remove_prefix(1);
  while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back())))
    trimmed.remove_suffix(1);
  CronSchedule out;
  if (trimmed.starts_with("every ")) {
    auto d = ParseDuration(trimmed.substr(6));
    if (!d.ok()) return Error("interval: " + d.message());
    if (*d < std::chrono::seconds(1)) return Error("interval must be at least 1s");
    out.every = *d;
    return out;
  }
  if (trimmed.starts_with("@")) {
    std::string lower = Lower(trimmed);
    for (const auto& [name, expansion] : kPresets) {
      if (lower == name) return ParseSchedule(expansion);
    }
    return Error("unknown preset '" + std::string(trimmed) +
                 "'; accepted: @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually");
  }
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < trimmed.size()) {
    size_t end = i;
    while (end < trimmed.size() && !std::isspace(static_cast<unsigned char>(trimmed[end]))) ++end;
    fields.push_back(trimmed.substr(i, end - i));
    i = end;
    while (i < trimmed.size() && std::isspace(static_cast<unsigned char>(trimmed[i]))) ++i;
  }
  if (fields.size() != 5) {
    return Error(
        "expected 5 fields (minute hour day-of-month month day-of-week), a preset such "
        "as @daily, or \"every <duration>\"; got " +
        std::to_string(fields.size()) + " field" + (fields.size() == 1 ? "" : "s"));
  }
  std::vector<std::vector<bool>> sets;
  for (size_t f = 0; f < 5; ++f) {
    auto set = ParseField(kFields[f], fields[f]);
    if (!set.ok()) return set.status();
    sets.push_back(std::move(set).value());
  }
  out.minutes = Bits<60>(sets[0]);
  out.hours = Bits<24>(sets[1]);
  out.days = Bits<32>(sets[2]);
  out.months = Bits<13>(sets[3]);
  if (sets[4][7]) sets[4][0] = true;  // 7 = Sunday
  out.weekdays = Bits<7>(sets[4]);
  // As in Vixie cron, a field starting with "*" (also "*/2") does not restrict the day.
  out.days_restricted = !fields[2].starts_with("*");
  out.weekdays_restricted = !fields[4].starts_with("*");
  if (Status s = CheckFires(out); !s.ok()) return s;
  return out;
}

}  // namespace kiln::dag
