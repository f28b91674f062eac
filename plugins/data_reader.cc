// Line numbers in errors are physical lines, 1-based, counting '\n' bytes:
// - not UTF-8: the line of the first byte that breaks UTF-8;
// - CSV (malformed, too many fields, field too long): the line on which the offending record
//   (row) starts, so that a quoted field spanning lines or an unterminated quote at the end of the
//   file points at the record's first line;
// - JSON lines: the line itself.
#include "plugins/data_reader.h"

#include <csv.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <exception>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/text.h"

namespace kiln::plugins::data {
namespace {

constexpr size_t kChunkBytes = size_t{64} << 10;
constexpr int kMaxJsonDepth = 512;  // deeper lines are refused: nlohmann's dump() recurses
constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";

Status Invalid(std::string message) {
  return Status::Error(ErrorCode::kInvalidArgument, std::move(message));
}

std::string At(const std::string& path, int64_t line) {
  return path + ":" + std::to_string(line) + ": ";
}

int64_t Newlines(std::string_view bytes) { return std::count(bytes.begin(), bytes.end(), '\n'); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { ::close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Validates UTF-8 incrementally, so that a sequence may be split across chunks.
class Utf8Check {
 public:
  // The offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code points
  // above U+10FFFF included), or npos.
  size_t Scan(std::string_view bytes) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      auto b = static_cast<unsigned char>(bytes[i]);
      if (need_ > 0) {
        if (b < lo_ || b > hi_) return i;
        --need_, lo_ = 0x80, hi_ = 0xBF;
      } else if (b >= 0x80 && !Lead(b)) {
        return i;
      }
    }
    return std::string_view::npos;
  }
  bool complete() const { return need_ == 0; }

 private:
  bool Lead(unsigned char b) {
    if (b >= 0xC2 && b <= 0xDF) {
      need_ = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need_ = 2, lo_ = b == 0xE0 ? 0xA0 : 0x80, hi_ = b == 0xED ? 0x9F : 0xBF;
    } else if (b >= 0xF0 && b <= 0xF4) {
      need_ = 3, lo_ = b == 0xF0 ? 0x90 : 0x80, hi_ = b == 0xF4 ? 0x8F : 0xBF;
    } else {
      return false;
    }
    return true;
  }
  int need_ = 0;
  unsigned char lo_ = 0x80, hi_ = 0xBF;
};

Status TooBig(const std::string& path, const CheckLimits& limits) {
  return Invalid(path + ": bigger than the limit of " + std::to_string(limits.max_bytes) +
                 " bytes");
}

// Opens `path` and refuses what is not a regular file or is bigger than the limit.
Status Open(const std::string& path, const CheckLimits& limits, int* fd) {
  *fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (*fd < 0) return Invalid(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  Status status;
  if (::fstat(*fd, &st) != 0) {
    status = Invalid(path + ": cannot read: " + std::strerror(errno));
  } else if (S_ISDIR(st.st_mode)) {
    status = Invalid(path + ": is a directory");
  } else if (!S_ISREG(st.st_mode)) {
    status = Invalid(path + ": not a regular file");
  } else if (static_cast<uint64_t>(st.st_size) > limits.max_bytes) {
    status = TooBig(path, limits);
  }
  if (!status.ok()) ::close(*fd);
  return status;
}

// Streams the bytes of `path` to `consume`, one chunk at a time, after checking that they are
// UTF-8 (a leading byte order mark is dropped). The bytes before an invalid one are consumed
// first, so that an earlier error of the format wins over the encoding error.
Status Stream(const std::string& path, const CheckLimits& limits,
              const std::function<Status(std::string_view)>& consume) {
  int raw = -1;
  if (Status s = Open(path, limits, &raw); !s.ok()) return s;
  Fd fd(raw);
  std::vector<char> buffer(kChunkBytes);
  Utf8Check utf8;
  int64_t line = 1;
  uint64_t total = 0;
  while (true) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Invalid(path + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;
    std::string_view chunk(buffer.data(), static_cast<size_t>(n));
    if (total == 0 && chunk.starts_with(kByteOrderMark)) chunk.remove_prefix(3);
    total += static_cast<uint64_t>(n);
    if (total > limits.max_bytes) return TooBig(path, limits);
    size_t bad = utf8.Scan(chunk);
    if (Status s = consume(chunk.substr(0, bad)); !s.ok()) return s;
    if (bad != std::string_view::npos) {
      return Invalid(At(path, line + Newlines(chunk.substr(0, bad))) + "not UTF-8");
    }
    line += Newlines(chunk);
  }
  if (!utf8.complete()) return Invalid(At(path, line) + "not UTF-8");
  return Status::Ok();
}

int NoSpace(unsigned char) { return 0; }  // fields are not trimmed

class CsvReader {
 public:
  using HeaderFn = std::function<void(const std::vector<std::string>&)>;
  using RowFn = std::function<void(const CsvCells&)>;
  CsvReader(const std::string& path, const CheckLimits& limits, const HeaderFn& on_header,
            const RowFn& on_row)
      : path_(path), limits_(limits), on_header_(on_header), on_row_(on_row) {}
  ~CsvReader() { csv_free(&parser_); }
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  Status Run() {
    constexpr unsigned char kOptions =
        CSV_STRICT | CSV_STRICT_FINI | CSV_EMPTY_IS_NULL | CSV_REPALL_NL;
    if (csv_init(&parser_, kOptions) != 0) return Status::Error(path_ + ": cannot parse CSV");
    csv_set_space_func(&parser_, NoSpace);
    csv_set_blk_size(&parser_, 4096);
    Status s = Stream(path_, limits_, [this](std::string_view bytes) { return Feed(bytes); });
    return s.ok() ? Finish() : s;
  }

 private:
  static void OnField(void* data, size_t size, void* self) {
    Guard(self, [&](CsvReader& r) { r.Field(static_cast<const char*>(data), size); });
  }
  static void OnRow(int terminator, void* self) {
    Guard(self, [&](CsvReader& r) { r.Row(terminator); });
  }
  // Exceptions must not unwind through libcsv's C frames.
  template <typename F>
  static void Guard(void* self, F f) {
    auto& reader = *static_cast<CsvReader*>(self);
    if (!reader.error_.ok()) return;  // libcsv finishes the chunk after an error; ignore it
    try {
      f(reader);
    } catch (const std::exception& e) {
      reader.error_ = Status::Error(reader.path_ + ": " + e.what());
    }
  }

  void Field(const char* data, size_t size) {
    if (size > limits_.max_field_bytes) {
      error_ = FieldTooLong();
    } else if (have_header_ && count_ == header_.size()) {
      error_ = Invalid(At(path_, line_) + "row " + std::to_string(rows_ + 1) +
                       " has more fields than the " + std::to_string(header_.size()) +
                       " columns of the header");
    } else if (!have_header_ && count_ == limits_.max_columns) {
      error_ = Invalid(At(path_, line_) + "more than " + std::to_string(limits_.max_columns) +
                       " columns in the header");
    } else {
      if (count_ == fields_.size()) fields_.emplace_back(), nulls_.push_back(false);
      nulls_[count_] = data == nullptr;
      fields_[count_].assign(data == nullptr ? "" : data, data == nullptr ? 0 : size);
      newlines_ += Newlines(fields_[count_]);
      ++count_;
    }
  }

  // A row of no fields is a blank line (or the '\n' of a "\r\n"): skipped.
  void Row(int terminator) {
    if (terminator == '\n') ++newlines_;
    if (count_ > 0 && !have_header_) {
      header_.assign(fields_.begin(), fields_.begin() + static_cast<ptrdiff_t>(count_));
      have_header_ = true;
      on_header_(header_);
    } else if (count_ > 0) {
      cells_.assign(header_.size(), std::nullopt);
      for (size_t i = 0; i < count_; ++i) {
        if (!nulls_[i]) cells_[i] = fields_[i];
      }
      ++rows_;
      on_row_(cells_);
    }
    count_ = 0;
    line_ += newlines_;
    newlines_ = 0;
  }

  Status Feed(std::string_view bytes) {
    size_t done = csv_parse(&parser_, bytes.data(), bytes.size(), OnField, OnRow, this);
    if (!error_.ok()) return error_;
    if (done != bytes.size()) {
      return Malformed("a quote inside an unquoted field, or text after a closing quote");
    }
    if (parser_.entry_pos > limits_.max_field_bytes) return FieldTooLong();
    return Status::Ok();
  }

  Status Finish() {
    if (csv_fini(&parser_, OnField, OnRow, this) != 0) {
      return Malformed("a quoted field without its closing quote");
    }
    if (!error_.ok()) return error_;
    if (!have_header_) return Invalid(path_ + ": empty: no header row");
    return Status::Ok();
  }

  Status Malformed(const char* what) {
    int code = csv_error(&parser_);
    std::string reason = csv_strerror(code);
    if (code == CSV_EPARSE) reason = "malformed CSV: " + reason + " (" + what + ")";
    return Invalid(At(path_, line_) + reason);
  }

  Status FieldTooLong() const {
    return Invalid(At(path_, line_) + "field longer than " +
                   std::to_string(limits_.max_field_bytes) + " bytes");
  }

  const std::string& path_;
  const CheckLimits& limits_;
  const HeaderFn& on_header_;
  const RowFn& on_row_;
  csv_parser parser_{};
  Status error_;                     // the first error raised inside a callback
  std::vector<std::string> fields_;  // the current row's fields, reused from row to row
  std::vector<bool> nulls_;
  size_t count_ = 0;  // fields of the current row so far
  std::vector<std::string> header_;
  bool have_header_ = false;
  CsvCells cells_;
  int64_t rows_ = 0;      // data rows read
  int64_t line_ = 1;      // the physical line on which the current record starts
  int64_t newlines_ = 0;  // '\n' bytes of the current record so far
};

// The deepest nesting of arrays and objects in a JSON text, strings skipped.
int Depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (ch == '\\' || ch == '"') {
        escaped = ch == '\\', in_string = ch != '"';
      }
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return deepest;
}

class JsonLinesReader {
 public:
  using ObjectFn = std::function<void(const nlohmann::ordered_json&)>;
  JsonLinesReader(const std::string& path, const CheckLimits& limits, const ObjectFn& on_object)
      : path_(path), limits_(limits), on_object_(on_object) {}

  Status Run() {
    Status s = Stream(path_, limits_, [this](std::string_view bytes) { return Feed(bytes); });
    if (!s.ok()) return s;
    if (!line_.empty()) s = Line();
    if (s.ok() && objects_ == 0) return Invalid(path_ + ": empty: no JSON object");
    return s;
  }

 private:
  Status Feed(std::string_view bytes) {
    while (!bytes.empty()) {
      size_t end = bytes.find('\n');
      std::string_view part = bytes.substr(0, end);
      if (line_.size() + part.size() > limits_.max_field_bytes) {
        return Invalid(At(path_, number_) + "line longer than " +
                       std::to_string(limits_.max_field_bytes) + " bytes");
      }
      line_.append(part);
      if (end == std::string_view::npos) break;
      if (Status s = Line(); !s.ok()) return s;
      line_.clear();
      ++number_;
      bytes.remove_prefix(end + 1);
    }
    return Status::Ok();
  }

  Status Line() {
    std::string_view text = line_;
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) return Status::Ok();
    if (Depth(text) > kMaxJsonDepth) {
      return Invalid(At(path_, number_) + "JSON nested deeper than " +
                     std::to_string(kMaxJsonDepth) + " levels");
    }
    auto value = nlohmann::ordered_json::parse(text.begin(), text.end(), nullptr, false);
    if (value.is_discarded() || !value.is_object()) {
      return Invalid(At(path_, number_) + "not a JSON object");
    }
    ++objects_;
    on_object_(value);
    return Status::Ok();
  }

  const std::string& path_;
  const CheckLimits& limits_;
  const ObjectFn& on_object_;
  int64_t objects_ = 0;
  std::string line_;    // the current line so far, without its '\n'
  int64_t number_ = 1;  // its physical line number
};

}  // namespace

Status ReadCsv(const std::string& path, const CheckLimits& limits,
               const std::function<void(const std::vector<std::string>&)>& on_header,
               const std::function<void(const CsvCells&)>& on_row) {
  CsvReader reader(path, limits, on_header, on_row);
  return reader.Run();
}

Status ReadJsonLines(const std::string& path, const CheckLimits& limits,
                     const std::function<void(const nlohmann::ordered_json&)>& on_object) {
  JsonLinesReader reader(path, limits, on_object);
  return reader.Run();
}

bool IsJsonLinesPath(std::string_view path) {
  size_t dot = path.rfind('.');
  if (dot == std::string_view::npos || path.find('/', dot) != std::string_view::npos) return false;
  std::string ext(path.substr(dot + 1));
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == "jsonl" || ext == "ndjson";
}

std::string ListNames(const std::vector<std::string>& names) {
  constexpr size_t kListed = 20;
  constexpr size_t kNameBytes = 60;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kListed; ++i) {
    std::string name = SafeUtf8(names[i]);
    if (name.size() > kNameBytes) {
      size_t end = kNameBytes;
      while (end > 0 && (static_cast<unsigned char>(name[end]) & 0xC0) == 0x80) --end;
      name = name.substr(0, end) + "...";
    }
    for (char& c : name) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    }
    out += (i == 0 ? "" : ", ") + name;
  }
  if (names.size() > kListed) out += ", and " + std::to_string(names.size() - kListed) + " more";
  return out;
}

}  // namespace kiln::plugins::data
