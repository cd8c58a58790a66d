#pragma once
/// \file
/// The two halves of NumPy broadcasting for autodiff: expand (a zero-stride view) and its
/// adjoint sum_to (sums the broadcast axes away). Each is the other's backward, so both are
/// differentiable to any order. reduce_into() is the strided reduction kernel that sum,
/// max and min over axes share (ops/reduce.hpp).
#include <algorithm>
#include <limits>

#include "ember/autodiff/var.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/threading.hpp"

namespace ember {

namespace detail {

struct AddCombine {
    template <class T> static T init() { return T(0); }
    template <class T> static T apply(T a, T b) { return a + b; }
};
struct MaxCombine {
    template <class T> static T init() { return -std::numeric_limits<T>::infinity(); }
    template <class T> static T apply(T a, T b) { return (a >= b || a != a) ? a : b; }  // NaN wins
};
struct MinCombine {
    template <class T> static T init() { return std::numeric_limits<T>::infinity(); }
    template <class T> static T apply(T a, T b) { return (a <= b || a != a) ? a : b; }  // NaN wins
};

// Reduces `src` (any layout) into a new contiguous tensor of shape `target`, where
// `target` broadcasts to src's shape: out[expand(i)] = combine over i of src[i].
template <class Combine, Real T>
Tensor<T> reduce_into(const Tensor<T>& src, const Shape& target, const char* op) {
    const Shape& s = src.shape();
    EMBER_CHECK(broadcast_shapes(target, s, op) == s, op, "cannot reduce shape ", s.str(), " to ",
                target.str());
    Tensor<T> out = Tensor<T>::full(target, Combine::template init<T>());
    if (s.numel() == 0) return out;
    const Tensor<T> dst = out.expand(s);
    const int r = s.rank();
    if (r == 0) {
        out.data()[0] = Combine::apply(out.data()[0], src.data()[0]);
        return out;
    }
    const Index inner = s[r - 1], rows = s.numel() / inner;
    const Index ss = src.strides()[static_cast<std::size_t>(r - 1)], ds = dst.strides()[static_cast<std::size_t>(r - 1)];
    // Rows map to disjoint destination rows only if no outer axis is reduced; then rows
    // can run in parallel.
    bool outer_reduced = false;
    for (int d = 0; d < r - 1; ++d)
        outer_reduced = outer_reduced || (dst.strides()[static_cast<std::size_t>(d)] == 0 && s[d] > 1);
    auto run_rows = [&](Index r0, Index r1) {
        for (Index row = r0; row < r1; ++row) {
            const T* a = src.data() + src.offset_of(row * inner);
            T* o = dst.data() + dst.offset_of(row * inner);
            if (ds == 0) {
                T acc = *o;
                if (ss == 1) for (Index j = 0; j < inner; ++j) acc = Combine::apply(acc, a[j]);
                else for (Index j = 0; j < inner; ++j) acc = Combine::apply(acc, a[j * ss]);
                *o = acc;
            } else if (ss == 1) {
                for (Index j = 0; j < inner; ++j) o[j] = Combine::apply(o[j], a[j]);
            } else {
                for (Index j = 0; j < inner; ++j) o[j] = Combine::apply(o[j], a[j * ss]);
            }
        }
    };
    if (outer_reduced || rows * inner < (1 << 16)) run_rows(0, rows);
    else parallel_chunks(rows, 1, 1, run_rows);
    return out;
}

}  // namespace detail

template <Real T>
Var<T> sum_to(const Var<T>& x, const Shape& target);

/// Broadcasts x to `target` without copying (a zero-stride view); backward sums back.
template <Real T>
Var<T> expand(const Var<T>& x, const Shape& target) {
    if (x.shape() == target) return x;
    const Shape from = x.shape();
    return record("expand", x.value().expand(target), {x},
                  [from](const Var<T>& g, std::span<const bool>) { return std::vector<Var<T>>{sum_to(g, from)}; });
}

/// Sums x over the axes along which `target` was broadcast to x's shape.
template <Real T>
Var<T> sum_to(const Var<T>& x, const Shape& target) {
    if (x.shape() == target) return x;
    const Shape from = x.shape();
    return record("sum_to", detail::reduce_into<detail::AddCombine>(x.value(), target, "sum_to"), {x},
                  [from](const Var<T>& g, std::span<const bool>) { return std::vector<Var<T>>{expand(g, from)}; });
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_BROADCAST_INSTANCES(X, T) \
    X template Var<T> expand<T>(const Var<T>&, const Shape&); \
    X template Var<T> sum_to<T>(const Var<T>&, const Shape&);
EMBER_EXTERN_INSTANCES(EMBER_BROADCAST_INSTANCES)

}  // namespace ember
