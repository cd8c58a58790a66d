#pragma once
/// \file
/// What a convolution does to its output as it stores it: add the bias of each output
/// channel, then apply a leaky ReLU (slope 0: a ReLU). Every backend stores through this,
/// while the values are in registers or in cache, which saves a pass over the output (and,
/// for the activation, one over the gradient: the backward multiplies the incoming gradient
/// by the activation's derivative as it reads it).
///
/// The arithmetic is that of the separate ops: (v + b), then LeakyReluOp's select
/// (expr/ops.hpp), so a fused convolution gives the bits of conv2d followed by leaky_relu.
#include <algorithm>
#include <cstring>
#include <optional>
#include <type_traits>

#include "ember/core/simd.hpp"

#include "ember/core/tensor.hpp"

namespace ember::detail {

// Copies a short row (an image row: tens of elements) with a few fixed-size moves, the last
// two overlapping, which the compiler emits as single vector loads and stores. A memmove
// call per row, or a vector loop with a scalar tail, cost more than the convolution itself.
template <Real T>
void copy_row(const T* from, Index n, T* to) {
    const char* s = reinterpret_cast<const char*>(from);
    char* d = reinterpret_cast<char*>(to);
    const auto bytes = static_cast<std::size_t>(n) * sizeof(T);
    auto two_moves = [&](auto size) {  // covers [size, 2·size] bytes
        std::memcpy(d, s, size);
        std::memcpy(d + bytes - size, s + bytes - size, size);
    };
    if (bytes >= 64) {
        std::size_t i = 0;
        for (; i + 64 <= bytes; i += 64) std::memcpy(d + i, s + i, 64);
        if (i < bytes) std::memcpy(d + bytes - 64, s + bytes - 64, 64);
    } else if (bytes >= 32) two_moves(std::integral_constant<std::size_t, 32>{});
    else if (bytes >= 16) two_moves(std::integral_constant<std::size_t, 16>{});
    else if (bytes >= 8) two_moves(std::integral_constant<std::size_t, 8>{});
    else if (bytes >= 4) two_moves(std::integral_constant<std::size_t, 4>{});
}

template <Real T>
struct ConvEpilogue {
    const T* bias = nullptr;  // [O], or none
    std::optional<T> slope;   // leaky ReLU's negative slope (>= 0), or no activation

    bool identity() const { return !bias && !slope; }

    // Output channel o's value v as stored.
    [[gnu::always_inline]] xsimd::batch<T> operator()(Index o, xsimd::batch<T> v) const {
        using Batch = xsimd::batch<T>;
        if (bias) v += Batch(bias[o]);
        return slope ? xsimd::select(v > Batch(T(0)), v, v * Batch(*slope)) : v;
    }
    [[gnu::always_inline]] T operator()(Index o, T v) const {
        if (bias) v += bias[o];
        return slope && !(v > T(0)) ? v * *slope : v;
    }

    // Stores n values of output channel o: to = epilogue(from); from may be to.
    void write_row(Index o, const T* from, Index n, T* to) const {
        if (identity()) {
            if (from != to) copy_row(from, n, to);
            return;
        }
        using Batch = xsimd::batch<T>;
        constexpr Index L = static_cast<Index>(Batch::size);
        Index i = 0;
        for (; i + L <= n; i += L) (*this)(o, Batch::load_unaligned(from + i)).store_unaligned(to + i);
        for (; i < n; ++i) to[i] = (*this)(o, from[i]);
    }

    // The activation alone over n values (the bias already added), in place.
    void activate(T* v, Index n) const {
        if (!slope) return;
        const ConvEpilogue activation_only{nullptr, slope};
        activation_only.write_row(0, v, n, v);
    }
};

}  // namespace ember::detail
