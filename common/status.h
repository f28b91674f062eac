// Errors that cross a module boundary are values: Status for "did it work", Result<T> for
// "here is a T or why not". Messages name the subject first and say what to do.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace kiln {

// What kind of failure, so that an adapter can map it (e.g. to an HTTP status).
enum class ErrorCode {
  kOk,
  kInternal,         // a bug or an unexpected failure
  kInvalidArgument,  // the caller's input is wrong (HTTP 400)
  kNotFound,         // HTTP 404
  kConflict,         // HTTP 409
  kUnavailable,      // a dependency (e.g. the database) cannot be reached (HTTP 503)
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string message) {
    return Status(ErrorCode::kInternal, std::move(message));
  }
  static Status Error(ErrorCode code, std::string message) {
    return Status(code, std::move(message));
  }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Status(ErrorCode code, std::string message)
      : message_(std::move(message)), code_(code == ErrorCode::kOk ? ErrorCode::kInternal : code) {}
  std::string message_;
  ErrorCode code_ = ErrorCode::kOk;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}       // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) {   // NOLINT
    if (std::get<Status>(v_).ok()) std::abort();  // a Result made from an ok Status is a bug
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }
  // The error, or an ok Status when there is a value (never throws: code that reports "the
  // status" of either kind must not take a process down).
  const Status& status() const {
    static const Status kOk;
    const Status* error = std::get_if<Status>(&v_);
    return error != nullptr ? *error : kOk;
  }
  const std::string& message() const { return status().message(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kiln

// Invariant checks: a failure is a bug in kiln, never a user error.
#define KILN_CHECK(cond)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "kiln: internal check failed at %s:%d: %s\n", __FILE__, __LINE__, \
                   #cond);                                                                   \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
