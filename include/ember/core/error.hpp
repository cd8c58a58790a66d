#pragma once
/// \file
/// ember::Error: every user-facing failure names the operation, the shapes and what was
/// expected, e.g.\ "matmul: inner dimensions differ: [64,784] x [512,10]".
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace ember {

/// The exception ember throws on misuse or bad input; the message names the operation, the
/// shapes and what was expected.
class Error : public std::runtime_error {
public:
    /// An error with the message `what`.
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Parts>
[[noreturn, gnu::cold]] void fail_with(const char* op, const Parts&... parts) {
    std::ostringstream os;
    os << op << ": ";
    (os << ... << parts);
    throw Error(os.str());
}
// The message is formatted by one function per list of decayed part types: a string
// literal is a `const char*` whatever its length, so the checks of a program share a few
// dozen formatters instead of compiling one per call site.
template <class... Parts>
[[noreturn]] inline void fail(const char* op, const Parts&... parts) {
    fail_with<std::decay_t<const Parts&>...>(op, parts...);
}
}  // namespace detail

/// Cheap precondition check that throws ember::Error with a formatted message.
#define EMBER_CHECK(cond, op, ...)                        \
    do {                                                  \
        if (!(cond)) ::ember::detail::fail(op, __VA_ARGS__); \
    } while (0)

}  // namespace ember
