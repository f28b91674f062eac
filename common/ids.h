// Strong ids. One object owns each graph; everyone else holds these.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace kiln {

// Index of a task inside one pipeline's Dag (0..n-1, in file order).
enum class TaskId : uint32_t {};
// Database id of a run (bigint identity).
enum class RunId : int64_t {};

inline uint32_t Index(TaskId id) { return static_cast<uint32_t>(id); }
inline int64_t Value(RunId id) { return static_cast<int64_t>(id); }
inline std::string ToString(RunId id) { return std::to_string(Value(id)); }

}  // namespace kiln

template <>
struct std::hash<kiln::RunId> {
  size_t operator()(kiln::RunId id) const noexcept { return std::hash<int64_t>()(kiln::Value(id)); }
};
template <>
struct std::hash<kiln::TaskId> {
  size_t operator()(kiln::TaskId id) const noexcept {
    return std::hash<uint32_t>()(kiln::Index(id));
  }
};
