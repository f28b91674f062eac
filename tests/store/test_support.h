// Helpers of the store tests: a fresh database per test, raw queries, a stand-in for the
// scheduler's thread that receives posted callbacks.
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <vector>

#include "store/database.h"

namespace kiln::store::testing {

inline std::string AdminUrl() {
  const char* url = std::getenv("KILN_TEST_DATABASE_URL");
  if (!url || !*url) {
    FAIL("KILN_TEST_DATABASE_URL is not set; run the tests through ctest (fixture 'postgres')");
  }
  return url;
}

inline std::string WithDatabase(const std::string& url, const std::string& name) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "dbname=" + name;
}

// CREATE DATABASE kiln_t_<random> on the fixture's server; dropped by the destructor, so tests
// are independent and may run in parallel.
class TestDatabase {
 public:
  TestDatabase() {
    std::random_device rd;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
    name_ = std::string("kiln_t_") + buf;
    pqxx::connection admin(AdminUrl());
    pqxx::nontransaction(admin).exec("CREATE DATABASE " + name_);
    url_ = WithDatabase(AdminUrl(), name_);
  }
  ~TestDatabase() {
    conn_.reset();
    try {
      pqxx::connection admin(AdminUrl());
      pqxx::nontransaction(admin).exec("DROP DATABASE " + name_ + " WITH (FORCE)");
    } catch (const std::exception& e) {
      WARN("dropping " << name_ << ": " << e.what());
    }
  }
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  const std::string& url() const { return url_; }

  // A connected and migrated Database.
  std::unique_ptr<Database> Open() {
    auto db = Database::Connect(url_);
    REQUIRE(db.ok());
    REQUIRE((*db)->Migrate().ok());
    return std::move(db).value();
  }

  // Runs `sql` on the test's own connection (time zone UTC) and returns every row as text:
  // columns joined by '|', "NULL" for nulls.
  std::vector<std::string> Rows(const std::string& sql) {
    if (!conn_) {
      conn_ = std::make_unique<pqxx::connection>(url_);
      pqxx::nontransaction(*conn_).exec("SET TimeZone = 'UTC'");
    }
    pqxx::nontransaction txn(*conn_);
    std::vector<std::string> rows;
    for (const pqxx::row& row : txn.exec(sql)) {
      std::string line;
      for (pqxx::row::size_type i = 0; i < row.size(); ++i) {
        if (i > 0) line += '|';
        line += row[i].is_null() ? "NULL" : row[i].c_str();
      }
      rows.push_back(line);
    }
    return rows;
  }
  std::string One(const std::string& sql) {
    auto rows = Rows(sql);
    REQUIRE(rows.size() == 1);
    return rows[0];
  }

 private:
  std::string name_;
  std::string url_;
  std::unique_ptr<pqxx::connection> conn_;
};

// Plays the scheduler's io_context: Post() queues callbacks from the store thread; RunAll() waits
// until `n` arrived and runs them on the test's thread, in order.
class Inbox {
 public:
  std::function<void(std::function<void()>)> Poster() {
    return [this](std::function<void()> f) {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(f));
      cv_.notify_all();
    };
  }
  void RunAll(size_t n) {
    std::vector<std::function<void()>> ready;
    {
      std::unique_lock lock(mu_);
      bool arrived =
          cv_.wait_for(lock, std::chrono::seconds(30), [&] { return queue_.size() >= n; });
      REQUIRE(arrived);
      ready.swap(queue_);
    }
    for (auto& f : ready) f();
  }
  size_t Size() {
    std::lock_guard lock(mu_);
    return queue_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::function<void()>> queue_;
};

inline Instant At(int64_t seconds) {
  // 2026-11-29T00:00:00Z + seconds
  return Instant(std::chrono::milliseconds((1795910400 + seconds) * 1000));
}

inline NewRun SimpleRun(std::vector<std::string> task_ids) {
  NewRun run;
  run.pipeline = "train";
  run.version_hash = "abc123";
  run.source = "[pipeline]\nname = \"train\"\n";
  run.trigger = "manual";
  run.logical_date = At(0);
  run.created_by = "tester";
  for (auto& id : task_ids) run.tasks.push_back({id, "default", 0});
  return run;
}

}  // namespace kiln::store::testing
