#pragma once
/// \file
/// Anomaly detection, like torch.autograd.detect_anomaly: stop at the first non-finite
/// value (NaN or ±Inf) an operation produces and name that operation.
///
///     {
///         ember::DetectAnomaly guard;        // on until the end of the scope
///         Var<float> loss = model(x);        // throws ember::Error at the first op that
///         loss.backward();                   //   produces NaN/Inf, forward or backward
///     }
///     ember::set_detect_anomaly(true);       // or switch it by hand; anomaly_enabled()
///
/// The mode is thread-local, like grad mode (var.hpp): it applies to the graph recorded
/// and differentiated on the calling thread, and a new thread starts with it off.
///
/// When it is on:
/// * forward: the output of every recorded op (a Var with a grad_fn: record() in var.hpp,
///   fused elementwise expressions in expr_node.hpp) is scanned right after it is computed.
///   The error names the op, its output shape, the first bad element (flat index, multi-index
///   and value) and the input shapes. For a fused expression it also names the elementwise
///   op inside it that produced the value and its operands there, e.g. "'log' of -1 gave
///   nan, in mul(log(#0), #1)".
/// * backward()/grad(): the gradients each node's backward returns are scanned; the error
///   names the node ("backward of 'matmul' produced NaN in gradient of input 0 of shape
///   [3,4] ...") and, for a fused expression, the elementwise op whose derivative did it.
///   Ops recorded by a create_graph backward are checked as forward ops and say which
///   backward they were part of.
///
/// Only values an op *produces* are errors. Leaves are never scanned, and a non-finite
/// value that merely propagates from a leaf (say a -inf attention mask, or NaN data masked
/// out with where()) is let through: a fused expression is blamed per element only when
/// one of its elementwise ops turns finite operands into a non-finite result, any other op
/// only when all its inputs are finite; a backward only when the incoming gradient and the
/// forward values it reads are finite (or, in a fused expression, when an elementwise
/// derivative turns finite values into a non-finite one). Ops recorded while anomaly
/// detection was off, and values computed outside the graph (NoGrad, no input requiring
/// grad), count as leaves.
///
/// When it is off, each recorded node costs one load of a thread-local flag and one
/// predictable branch; nothing is scanned, and NaN flows through silently, as in PyTorch.
#include <charconv>
#include <cmath>
#include <string>

#include "ember/core/simd.hpp"

#include "ember/core/tensor.hpp"

namespace ember {

namespace detail {
inline bool& anomaly_flag() {
    thread_local bool enabled = false;
    return enabled;
}
}  // namespace detail

/// Whether anomaly detection is on for this thread (off by default).
inline bool anomaly_enabled() { return detail::anomaly_flag(); }
/// Turns anomaly detection on or off for this thread.
inline void set_detect_anomaly(bool enabled) { detail::anomaly_flag() = enabled; }

/// Scope in which anomaly detection is on (or off, with DetectAnomaly(false)); the previous
/// state comes back at the end of the scope.
class DetectAnomaly {
public:
    /// Sets anomaly detection to `enabled` until the guard is destroyed.
    explicit DetectAnomaly(bool enabled = true) : previous_(detail::anomaly_flag()) {
        detail::anomaly_flag() = enabled;
    }
    ~DetectAnomaly() { detail::anomaly_flag() = previous_; }
    DetectAnomaly(const DetectAnomaly&) = delete;
    DetectAnomaly& operator=(const DetectAnomaly&) = delete;

private:
    bool previous_;
};

namespace detail {

// Index of the first non-finite element of p[0, n), or -1. Blocks of SIMD batches
// accumulate x - x (0 when finite, NaN otherwise) in four independent registers; only a
// block that contains a bad element is searched element by element.
template <Real T>
[[gnu::noinline]] Index first_non_finite(const T* p, Index n) {
    using B = xsimd::batch<T>;
    constexpr Index W = static_cast<Index>(B::size);
    constexpr Index Block = 4 * W;
    Index i = 0;
    for (; i + Block <= n; i += Block) {
        const B x0 = B::load_unaligned(p + i), x1 = B::load_unaligned(p + i + W);
        const B x2 = B::load_unaligned(p + i + 2 * W), x3 = B::load_unaligned(p + i + 3 * W);
        const B acc = ((x0 - x0) + (x1 - x1)) + ((x2 - x2) + (x3 - x3));
        // (not `acc != acc`: xsimd 8 compiles != to an ordered compare on AVX, false for NaN)
        if (!xsimd::all(acc == acc)) break;  // the scalar loop below finds it in this block
    }
    for (; i < n; ++i)
        if (!std::isfinite(p[i])) return i;
    return -1;
}

// Row-major index of the first non-finite element of t at or after `from`, or -1. Any
// layout: contiguous tensors are one run, views are scanned row by row.
template <Real T>
Index first_non_finite(const Tensor<T>& t, Index from = 0) {
    const Index n = t.numel();
    if (from >= n) return -1;
    // Row-major contiguity tested here rather than with Tensor::is_contiguous: one more
    // caller of that small function made GCC stop inlining it into recorded ops.
    bool contiguous = true;
    const Strides c = t.shape().contiguous_strides();
    for (int d = 0; d < t.rank(); ++d)
        contiguous = contiguous && (t.shape()[d] == 1 || t.strides()[static_cast<std::size_t>(d)] == c[static_cast<std::size_t>(d)]);
    if (contiguous) {
        const Index k = first_non_finite(t.data() + from, n - from);
        return k < 0 ? -1 : from + k;
    }
    const int r = t.rank();
    const Index inner = t.shape()[r - 1];
    const Index s = t.strides()[static_cast<std::size_t>(r - 1)];
    for (Index row = from / inner; row * inner < n; ++row) {
        const T* src = t.data() + t.offset_of(row * inner);
        const Index j0 = row == from / inner ? from % inner : 0;
        if (s == 1) {
            const Index k = first_non_finite(src + j0, inner - j0);
            if (k >= 0) return row * inner + j0 + k;
        } else {
            for (Index j = j0; j < inner; ++j)
                if (!std::isfinite(src[j * s])) return row * inner + j;
        }
    }
    return -1;
}

template <Real T>
bool all_finite(const Tensor<T>& t) {
    return first_non_finite(t) < 0;
}

// Shortest round-trip text of a value: "-1", "0.1", "nan", "inf", "-inf".
template <Real T>
[[gnu::cold]] std::string anomaly_number(T v) {
    if (std::isnan(v)) return "nan";  // whatever its sign bit
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, res.ptr);
}

// "NaN", "+Inf" or "-Inf".
template <Real T>
const char* anomaly_kind(T v) {
    return std::isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

// Row-major element i of shape s as a multi-index, "[1,2]".
[[gnu::cold]] inline std::string anomaly_multi_index(const Shape& s, Index i) {
    std::array<Index, kMaxRank> idx{};
    for (int d = s.rank() - 1; d >= 0; --d) {
        idx[static_cast<std::size_t>(d)] = s[d] ? i % s[d] : 0;
        i = s[d] ? i / s[d] : 0;
    }
    std::string out = "[";
    for (int d = 0; d < s.rank(); ++d) out += (d ? "," : "") + std::to_string(idx[static_cast<std::size_t>(d)]);
    return out + "]";
}

// "element 5 ([1,2]) = nan"
template <Real T>
[[gnu::cold]] std::string anomaly_element(const Tensor<T>& t, Index i) {
    return "element " + std::to_string(i) + " (" + anomaly_multi_index(t.shape(), i) + ") = " + anomaly_number(t.flat(i));
}

// While a node's backward runs in anomaly mode, the name of that node, so that an op the
// backward records (create_graph) can say which backward it belongs to.
inline const char*& anomaly_backward_context() {
    thread_local const char* name = nullptr;
    return name;
}
class AnomalyBackwardScope {
public:
    explicit AnomalyBackwardScope(const char* name) : previous_(anomaly_backward_context()) {
        anomaly_backward_context() = name;
    }
    ~AnomalyBackwardScope() { anomaly_backward_context() = previous_; }
    AnomalyBackwardScope(const AnomalyBackwardScope&) = delete;
    AnomalyBackwardScope& operator=(const AnomalyBackwardScope&) = delete;

private:
    const char* previous_;
};

// " (recorded while computing the backward of 'log')" or "".
[[gnu::cold]] inline std::string anomaly_context_suffix() {
    const char* b = anomaly_backward_context();
    return b ? std::string(" (recorded while computing the backward of '") + b + "')" : std::string();
}

}  // namespace detail
}  // namespace ember
