// Error types and the CRFSEG_CHECK macro.
//
// Library code never aborts on anything a user can cause: it throws one of the
// exceptions below, all derived from crfseg::Error (a std::runtime_error).
// Messages name the op, what was expected and what was received, e.g.
//   "add: expected tensors on the same device, got cpu and cuda:0"
// CRFSEG_CHECK builds its message only on failure and appends file:line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace crfseg {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct ShapeError : Error { using Error::Error; };
struct DTypeError : Error { using Error::Error; };
struct DeviceError : Error { using Error::Error; };
struct NotImplementedError : Error { using Error::Error; };
struct OutOfMemoryError : Error { using Error::Error; };
struct IOError : Error { using Error::Error; };
struct CudaError : Error { using Error::Error; };
struct AutogradError : Error { using Error::Error; };
struct ValueError : Error { using Error::Error; };

namespace detail {
// Concatenates any streamable arguments into one string.
template <typename... Parts>
std::string concat_message(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}
std::string basename_of(const char* path);
}  // namespace detail

}  // namespace crfseg

// CRFSEG_CHECK(cond, ErrorType, parts...): throws ErrorType("parts... (file:line)")
// when cond is false. The message parts are only evaluated on failure.
#define CRFSEG_CHECK(cond, ErrorType, ...)                                         \
  do {                                                                              \
    if (!(cond)) [[unlikely]] {                                                     \
      throw ErrorType(::crfseg::detail::concat_message(__VA_ARGS__, " (",           \
                                                       ::crfseg::detail::basename_of(__FILE__), \
                                                       ":", __LINE__, ")"));        \
    }                                                                               \
  } while (0)
