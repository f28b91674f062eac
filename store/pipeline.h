// Private to store/: a libpq connection in pipeline mode, so that a transaction of n prepared
// statements costs one round trip instead of n + 2 (BEGIN, each statement, COMMIT).
//
// Everything sent between two Syncs runs in one implicit transaction: it commits at the Sync,
// or, at the first statement that fails, the server skips the rest and rolls everything back.
// Errors are thrown as libpqxx's exception types (pqxx::sql_error with its SQLSTATE,
// pqxx::broken_connection), so callers classify them as they do for libpqxx calls.
#pragma once

#include <functional>
#include <optional>
#include <pqxx/except>
#include <span>
#include <string>
#include <utility>
#include <vector>

struct pg_conn;

namespace kiln::store {

// One execution of a prepared statement: its name and its parameters as text (nullopt = NULL).
struct Statement {
  const char* name = nullptr;
  std::vector<std::optional<std::string>> params;
  Statement& Add(std::optional<std::string> v) {
    params.push_back(std::move(v));
    return *this;
  }
};

// The rows a statement returned, each column as text (nullopt = NULL).
using ResultRows = std::vector<std::vector<std::optional<std::string>>>;

class PipelineConnection {
 public:
  PipelineConnection() = default;
  ~PipelineConnection();
  PipelineConnection(const PipelineConnection&) = delete;
  PipelineConnection& operator=(const PipelineConnection&) = delete;

  // Connects (blocking), runs `setup` when not empty (a session lock, say) and prepares every
  // statement of `statements` (name, SQL), all in one round trip. Throws
  // pqxx::broken_connection or pqxx::sql_error.
  void Connect(const std::string& url,
               const std::vector<std::pair<std::string, std::string>>& statements,
               const std::string& setup = {});
  bool connected() const { return conn_ != nullptr; }

  // Sends every statement, then, when set, calls `before_sync` (a crash point: the server has the
  // statements but not the Sync that commits them), then the Sync (without `before_sync`, the
  // statements and the Sync leave in one write), and returns each statement's rows in order
  // once the transaction has committed. On a failure nothing was committed; the connection is
  // closed when it is broken.
  std::vector<ResultRows> Transaction(std::span<const Statement> statements,
                                      const std::function<void()>& before_sync);

 private:
  std::vector<ResultRows> Run(std::span<const Statement> statements,
                              const std::function<void()>& before_sync);
  void PrepareAll(const std::vector<std::pair<std::string, std::string>>& statements);
  void ReadSync(std::optional<pqxx::sql_error>& error);
  void Close();
  [[noreturn]] void Fail(const std::string& what);
  pg_conn* conn_ = nullptr;
};

}  // namespace kiln::store
