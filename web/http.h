// Private to web/: a request as the route handlers see it and the response they fill, read and
// written by web/front.cc. Names follow the common HTTP library vocabulary (has_header,
// set_content) so that handlers read as usual.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kiln::web {

// Header names compare without regard to case.
struct NoCase {
  bool operator()(const std::string& a, const std::string& b) const;
};
using Headers = std::multimap<std::string, std::string, NoCase>;
using Params = std::multimap<std::string, std::string>;

struct Request {
  std::string method;  // as sent: "GET", "HEAD", "POST", ...
  std::string target;  // as sent: path and query
  std::string path;    // percent-decoded
  Params params;       // the query, percent-decoded, '+' read as a space
  Headers headers;
  std::string body;

  bool has_header(const std::string& name) const { return headers.count(name) > 0; }
  size_t get_header_value_count(const std::string& name) const { return headers.count(name); }
  // The `index`th value of the header, or "".
  std::string get_header_value(const std::string& name, size_t index = 0) const;
  bool has_param(const std::string& name) const { return params.count(name) > 0; }
  std::string get_param_value(const std::string& name) const;
};

// Splits a request target into its decoded path and query parameters. False when it is not an
// origin-form target ("/...") or a percent escape is broken. What it decodes to is checked by
// the handlers (a NUL byte, a '/' in a path argument).
bool ParseTarget(std::string_view target, std::string& path, Params& params);
// Percent-decodes one segment of a path as sent (so that "%2F" stays inside its segment). False
// on a broken escape.
bool DecodeSegment(std::string_view segment, std::string& out);

// Where a stream writes. write() returns false once the client has gone away or stopped
// reading; done() ends the response cleanly.
class DataSink {
 public:
  virtual ~DataSink() = default;
  virtual bool write(const char* data, size_t size) = 0;
  virtual void done() = 0;
};

// A stream's step: called again and again on a stream thread until it returns false (the
// response is cut short) or calls sink.done(). A step may block, for a short while.
using StreamStep = std::function<bool(DataSink&)>;

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
  StreamStep stream;   // when set, the body is this stream, sent chunked
  bool close = false;  // close the connection after this response

  void set_header(const std::string& name, const std::string& value);
  bool has_header(const std::string& name) const { return headers.count(name) > 0; }
  std::string get_header_value(const std::string& name) const;
  void set_content(std::string content, const std::string& type);
  void set_stream(const std::string& type, StreamStep step);
};

// `text` with ASCII letters in lower case (header names and values that compare so).
std::string AsciiLower(std::string_view text);

// "OK", "Not Found", ...; "" for a code it does not know.
std::string_view StatusText(int status);

}  // namespace kiln::web
