#include "common/users.h"

#include <unistd.h>

#include <catch2/catch.hpp>

using kiln::Identity;
using kiln::UidRange;

TEST_CASE("a run's identity takes its id from the range, the base user's group as its group") {
  const Identity base{"kiln-task", 999, 995, {995, 44}, true};
  const Identity run = kiln::RunIdentity(base, UidRange{100000, 1000}, 2345);
  CHECK(run.name == "kiln-task");
  CHECK(run.uid == 100345);
  CHECK(run.gid == 100345);
  CHECK(run.groups == std::vector<gid_t>{995});
  CHECK(run.switch_user);
  // No range, or no switch: the base as it is.
  CHECK(kiln::RunIdentity(base, UidRange{}, 2345).uid == 999);
  Identity self = base;
  self.switch_user = false;
  CHECK(kiln::RunIdentity(self, UidRange{100000, 1000}, 2345).uid == 999);
}

TEST_CASE("a range that holds a user or group of the host is found") {
  // nobody (65534) and root (0) are in every Debian user database.
  CHECK(kiln::FirstHolder(UidRange{65000, 1000}) == "user 'nobody' (uid 65534)");
  CHECK(kiln::FirstHolder(UidRange{0, 1}) == "user 'root' (uid 0)");
  CHECK(kiln::FirstHolder(UidRange{1879048192, 1u << 24}).empty());
}

TEST_CASE("users are looked up by name, with their groups") {
  auto root = kiln::LookupIdentity("root");
  REQUIRE(root.ok());
  CHECK(root->uid == 0);
  CHECK(root->switch_user);
  auto missing = kiln::LookupIdentity("no-such-user-kiln");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.message() == "no user named 'no-such-user-kiln'");
  CHECK(kiln::CurrentIdentity().uid == ::geteuid());
  CHECK_FALSE(kiln::CurrentIdentity().switch_user);
  CHECK(kiln::FoldersDownTo("/a/b") == std::vector<std::string>{"/", "/a", "/a/b"});
}
