// The one exception type of the project and the check macro that builds its messages.
// Every message starts with the op or component that failed, then what was expected and what came.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace unirep {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Args> std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

template <class T> std::string to_string(const std::vector<T>& v) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < v.size(); ++i) os << (i ? ", " : "") << v[i];
  os << "]";
  return os.str();
}

}  // namespace unirep

#define UNIREP_CHECK(COND, ...) \
  do {                          \
    if (!(COND)) throw ::unirep::Error(::unirep::detail::concat(__VA_ARGS__)); \
  } while (0)
