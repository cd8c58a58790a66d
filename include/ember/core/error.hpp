#pragma once
// ember::Error: every user-facing failure names the operation, the shapes and what was
// expected, e.g. "matmul: inner dimensions differ: [64,784] x [512,10]".
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace ember {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Parts>
[[noreturn]] inline void fail(const char* op, Parts&&... parts) {
    std::ostringstream os;
    os << op << ": ";
    (os << ... << std::forward<Parts>(parts));
    throw Error(os.str());
}
}  // namespace detail

// Cheap precondition check that throws ember::Error with a formatted message.
#define EMBER_CHECK(cond, op, ...)                        \
    do {                                                  \
        if (!(cond)) ::ember::detail::fail(op, __VA_ARGS__); \
    } while (0)

}  // namespace ember
