// The database schema as numbered SQL migrations compiled into the binary. Database::Migrate()
// applies the ones a database lacks, in order, under an advisory lock. Private to store/.
#pragma once

#include <span>
#include <string_view>

namespace kiln::store {

struct Migration {
  int version;            // 1, 2, ... without gaps; never renumbered once released
  std::string_view name;  // for messages
  std::string_view sql;   // one or more statements, run in one transaction
};

// All migrations, ascending by version.
std::span<const Migration> Migrations();

}  // namespace kiln::store
