#include "scheduler/pool_queue.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using kiln::RunId;
using kiln::TaskId;
using kiln::scheduler::PoolQueue;
using kiln::scheduler::Ticket;

namespace {

Ticket MakeTicket(uint32_t task, std::string pool = "default", int slots = 1, int priority = 0,
                  int64_t run = 1) {
  Ticket ticket;
  ticket.run = static_cast<RunId>(run);
  ticket.task = static_cast<TaskId>(task);
  ticket.pool = std::move(pool);
  ticket.slots = slots;
  ticket.priority = priority;
  return ticket;
}

// Task indexes of tickets, to compare orders.
std::vector<uint32_t> Tasks(const std::vector<Ticket>& tickets) {
  std::vector<uint32_t> out;
  for (const Ticket& t : tickets) out.push_back(kiln::Index(t.task));
  return out;
}

}  // namespace

TEST_CASE("higher priority starts first, ties in arrival order") {
  PoolQueue queue({{"default", 1}}, 0);
  queue.Push(MakeTicket(0, "default", 1, 0));
  queue.Push(MakeTicket(1, "default", 1, 5));
  queue.Push(MakeTicket(2, "default", 1, 1));
  queue.Push(MakeTicket(3, "default", 1, 5));
  queue.Push(MakeTicket(4, "default", 1, 0));
  CHECK(queue.waiting("default") == 5);

  std::vector<uint32_t> order;
  for (int i = 0; i < 5; ++i) {
    std::vector<Ticket> started = queue.TakeStartable();
    REQUIRE(started.size() == 1);
    CHECK(queue.TakeStartable().empty());  // the pool is full
    order.push_back(kiln::Index(started[0].task));
    queue.Release(started[0]);
  }
  CHECK(order == std::vector<uint32_t>{1, 3, 2, 0, 4});
  CHECK(queue.waiting("default") == 0);
  CHECK(queue.in_use("default") == 0);
}

TEST_CASE("negative priorities come after the default") {
  PoolQueue queue({{"default", 3}}, 0);
  queue.Push(MakeTicket(0, "default", 1, -1));
  queue.Push(MakeTicket(1, "default", 1, 0));
  queue.Push(MakeTicket(2, "default", 1, -5));
  CHECK(Tasks(queue.TakeStartable()) == std::vector<uint32_t>{1, 0, 2});
}

TEST_CASE("tickets hold their slots until released") {
  PoolQueue queue({{"default", 4}}, 0);
  queue.Push(MakeTicket(0, "default", 2));
  queue.Push(MakeTicket(1, "default", 2));
  queue.Push(MakeTicket(2, "default", 2));
  std::vector<Ticket> started = queue.TakeStartable();
  CHECK(Tasks(started) == std::vector<uint32_t>{0, 1});
  CHECK(queue.in_use("default") == 4);
  CHECK(queue.running() == 2);
  CHECK(queue.waiting("default") == 1);
  CHECK(queue.TakeStartable().empty());
  queue.Release(started[1]);
  CHECK(queue.in_use("default") == 2);
  CHECK(Tasks(queue.TakeStartable()) == std::vector<uint32_t>{2});
  CHECK(queue.in_use("default") == 4);
  CHECK(queue.running() == 2);
}

TEST_CASE("a head that does not fit blocks its pool") {
  PoolQueue queue({{"default", 4}, {"other", 1}}, 0);
  queue.Push(MakeTicket(0, "default", 2));
  std::vector<Ticket> first = queue.TakeStartable();
  REQUIRE(first.size() == 1);
  queue.Push(MakeTicket(1, "default", 3, 10));  // wide, high priority: needs 3, 2 free
  queue.Push(MakeTicket(2, "default", 1, 0));   // narrow: would fit, must not overtake
  queue.Push(MakeTicket(3, "other", 1, 0));     // another pool is not blocked
  CHECK(Tasks(queue.TakeStartable()) == std::vector<uint32_t>{3});
  CHECK(queue.in_use("default") == 2);
  queue.Release(first[0]);
  CHECK(Tasks(queue.TakeStartable()) == std::vector<uint32_t>{1, 2});
  CHECK(queue.in_use("default") == 4);
}

TEST_CASE("max_parallel limits tasks over all pools") {
  PoolQueue queue({{"cpu", 4}, {"gpu", 2}}, 3);
  queue.Push(MakeTicket(0, "cpu", 1, 0));
  queue.Push(MakeTicket(1, "gpu", 1, 0));
  queue.Push(MakeTicket(2, "cpu", 1, 7));
  queue.Push(MakeTicket(3, "gpu", 1, 0));
  queue.Push(MakeTicket(4, "cpu", 1, 0));
  // Across pools: best (priority, arrival) first.
  std::vector<Ticket> started = queue.TakeStartable();
  CHECK(Tasks(started) == std::vector<uint32_t>{2, 0, 1});
  CHECK(queue.running() == 3);
  CHECK(queue.TakeStartable().empty());
  queue.Release(started[0]);
  CHECK(queue.running() == 2);
  CHECK(Tasks(queue.TakeStartable()) == std::vector<uint32_t>{3});
  CHECK(queue.in_use("cpu") == 1);
  CHECK(queue.in_use("gpu") == 2);
  CHECK(queue.waiting("cpu") == 1);
}

TEST_CASE("max_parallel 0 means no global limit") {
  PoolQueue queue({{"default", 100}}, 0);
  for (uint32_t i = 0; i < 50; ++i) queue.Push(MakeTicket(i));
  CHECK(queue.TakeStartable().size() == 50);
  CHECK(queue.running() == 50);
}

TEST_CASE("Reject explains tickets that can never start") {
  PoolQueue queue({{"default", 4}, {"gpu", 2}}, 0);
  CHECK_FALSE(queue.Reject(MakeTicket(0, "default", 4)).has_value());
  CHECK_FALSE(queue.Reject(MakeTicket(0, "gpu", 2)).has_value());
  CHECK(queue.Reject(MakeTicket(0, "gpu", 3)) == "task needs 3 slots but pool 'gpu' has 2");
  CHECK(queue.Reject(MakeTicket(0, "tpu", 1)) ==
        "pool 'tpu' is not configured (configured: default, gpu)");
  CHECK(queue.Reject(MakeTicket(0, "gpu", 0)) ==
        "task needs 0 slots but every task needs at least 1 slot");

  PoolQueue only_default({{"default", 8}}, 0);
  CHECK(only_default.Reject(MakeTicket(0, "gpu", 1)) ==
        "pool 'gpu' is not configured (configured: default)");
  PoolQueue none({}, 0);
  CHECK(none.Reject(MakeTicket(0, "default", 1)) ==
        "pool 'default' is not configured (configured: none)");
}

TEST_CASE("RemoveRun drops only that run's queued tickets") {
  PoolQueue queue({{"default", 1}, {"gpu", 1}}, 0);
  queue.Push(MakeTicket(0, "default", 1, 0, /*run=*/1));
  std::vector<Ticket> running = queue.TakeStartable();  // run 1's task 0 holds the slot
  REQUIRE(running.size() == 1);
  queue.Push(MakeTicket(1, "default", 1, 0, 2));
  queue.Push(MakeTicket(2, "gpu", 1, 0, 1));
  queue.Push(MakeTicket(3, "default", 1, 9, 1));
  queue.Push(MakeTicket(4, "default", 1, 5, 2));
  queue.Push(MakeTicket(5, "default", 1, 0, 1));

  std::vector<Ticket> removed = queue.RemoveRun(RunId{1});
  CHECK(Tasks(removed) == std::vector<uint32_t>{2, 3, 5});  // in arrival order
  CHECK(queue.waiting("default") == 2);
  CHECK(queue.waiting("gpu") == 0);
  CHECK(queue.in_use("default") == 1);  // a started ticket keeps its slot
  CHECK(queue.RemoveRun(RunId{7}).empty());

  queue.Release(running[0]);
  std::vector<uint32_t> order;
  for (int i = 0; i < 2; ++i) {
    std::vector<Ticket> started = queue.TakeStartable();
    REQUIRE(started.size() == 1);
    order.push_back(kiln::Index(started[0].task));
    queue.Release(started[0]);
  }
  CHECK(order == std::vector<uint32_t>{4, 1});  // the heap order survives the removal
}

TEST_CASE("counters of unknown pools are zero") {
  PoolQueue queue({{"default", 2}}, 0);
  CHECK(queue.waiting("nope") == 0);
  CHECK(queue.in_use("nope") == 0);
  CHECK(queue.sizes().at("default") == 2);
}

TEST_CASE("Remove drops one queued ticket and keeps the order of the rest") {
  PoolQueue queue({{"default", 1}, {"gpu", 1}}, 0);
  queue.Push(MakeTicket(0, "default", 1, 0));
  queue.Push(MakeTicket(1, "default", 1, 3));
  queue.Push(MakeTicket(2, "default", 1, 1));
  queue.Push(MakeTicket(3, "gpu", 1, 0));
  queue.Push(MakeTicket(1, "default", 1, 0, /*run=*/2));
  CHECK(queue.Remove(RunId{1}, TaskId{1}));
  CHECK_FALSE(queue.Remove(RunId{1}, TaskId{1}));  // no longer queued
  CHECK_FALSE(queue.Remove(RunId{3}, TaskId{0}));  // never queued
  CHECK(queue.waiting("default") == 3);
  CHECK(queue.Remove(RunId{1}, TaskId{3}));
  CHECK(queue.waiting("gpu") == 0);
  std::vector<uint32_t> order;
  for (int i = 0; i < 3; ++i) {
    std::vector<Ticket> started = queue.TakeStartable();
    REQUIRE(started.size() == 1);
    order.push_back(kiln::Index(started[0].task));
    queue.Release(started[0]);
  }
  CHECK(order == std::vector<uint32_t>{2, 0, 1});  // priority 1, then arrival order
  CHECK(queue.waiting("default") == 0);
}

TEST_CASE("background (backfill) tickets start after every other, whatever their priority") {
  PoolQueue q({{"default", 1}}, 0);
  Ticket backfill = MakeTicket(1, "default", 1, 100, 2);
  backfill.background = true;
  q.Push(backfill);
  q.Push(MakeTicket(2, "default", 1, -5, 3));
  q.Push(MakeTicket(3));
  CHECK(Tasks(q.TakeStartable()) == std::vector<uint32_t>{3});
  q.Release(MakeTicket(3));
  CHECK(Tasks(q.TakeStartable()) == std::vector<uint32_t>{2});
  q.Release(MakeTicket(2));
  CHECK(Tasks(q.TakeStartable()) == std::vector<uint32_t>{1});
}

TEST_CASE("pools resized while tickets wait and run: bigger starts more, smaller drains first") {
  PoolQueue q({{"default", 1}, {"gpu", 2}}, 0);
  q.Push(MakeTicket(1));
  q.Push(MakeTicket(2));
  q.Push(MakeTicket(3));
  REQUIRE(Tasks(q.TakeStartable()) == std::vector<uint32_t>{1});
  // Bigger: two more fit at once.
  REQUIRE(q.Resize({{"default", 3}, {"gpu", 2}}, 0) == std::nullopt);
  CHECK(Tasks(q.TakeStartable()) == std::vector<uint32_t>{2, 3});
  CHECK(q.sizes().at("default") == 3);
  // Smaller than what is in use: nothing new starts until the slots in use fall below it.
  REQUIRE(q.Resize({{"default", 1}, {"gpu", 2}}, 0) == std::nullopt);
  q.Push(MakeTicket(4));
  CHECK(q.TakeStartable().empty());
  q.Release(MakeTicket(1));
  CHECK(q.TakeStartable().empty());
  q.Release(MakeTicket(2));
  q.Release(MakeTicket(3));
  CHECK(Tasks(q.TakeStartable()) == std::vector<uint32_t>{4});
  // A new limit over all pools.
  REQUIRE(q.Resize({{"default", 1}, {"gpu", 2}}, 1) == std::nullopt);
  q.Push(MakeTicket(5, "gpu"));
  CHECK(q.TakeStartable().empty());
}

TEST_CASE("a resize that would strand a waiting or running ticket is refused, changing nothing") {
  PoolQueue q({{"default", 1}, {"gpu", 4}}, 0);
  q.Push(MakeTicket(1, "gpu", 3));
  q.Push(MakeTicket(2, "gpu", 3));
  REQUIRE(Tasks(q.TakeStartable()) == std::vector<uint32_t>{1});
  CHECK(q.Resize({{"default", 1}, {"gpu", 2}}, 0) ==
        "pool 'gpu' of 2 slots would be too small for a waiting task that needs 3 slots");
  CHECK(q.Resize({{"default", 1}}, 0) ==
        "pool 'gpu' is left out, but it has 1 waiting task and 3 slots in use; keep it until they "
        "are done");
  CHECK(q.sizes().at("gpu") == 4);
  // A pool left out once it is idle, and a new one.
  q.Release(MakeTicket(1, "gpu", 3));
  REQUIRE(Tasks(q.TakeStartable()) == std::vector<uint32_t>{2});
  CHECK(q.Resize({{"default", 1}}, 0) ==
        "pool 'gpu' is left out, but it has 0 waiting tasks and 3 slots in use; keep it until they "
        "are done");
  q.Release(MakeTicket(2, "gpu", 3));
  REQUIRE(q.Resize({{"default", 1}, {"cpu", 2}}, 0) == std::nullopt);
  CHECK(q.Reject(MakeTicket(3, "gpu")) ==
        "pool 'gpu' is not configured (configured: cpu, default)");
  q.Push(MakeTicket(3, "cpu", 2));
  CHECK(Tasks(q.TakeStartable()) == std::vector<uint32_t>{3});
}
