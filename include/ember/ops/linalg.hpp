#pragma once
/// \file
/// Matrix products through Eigen's GEMM on Eigen::Maps of our own buffers: no copies, no
/// second BLAS. A transposed view (strides swapped) is passed to Eigen as a transposed map.
/// Backward: dA = G Bᵀ, dB = Aᵀ G, written with matmul itself, so twice differentiable.
#include <vector>

#include <Eigen/Core>

#include "ember/core/instances.hpp"
#include "ember/ops/packed_weights.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember {

namespace detail {

template <Real T>
using RowMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;
template <Real T>
using ColMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>, 0, Eigen::OuterStride<>>;
// Calls f with an Eigen expression for the rows x cols matrix at p with the given
// strides: a row-major map, or a column-major map for a transposed view.
template <Real T, class F>
void with_matrix(const T* p, Index rows, Index cols, Index rs, Index cs, F&& f) {
    if (cs == 1 || cols == 1) f(RowMap<T>(p, rows, cols, Eigen::OuterStride<>(rows == 1 ? cols : rs)));
    else if (rs == 1 || rows == 1) f(ColMap<T>(p, rows, cols, Eigen::OuterStride<>(cols == 1 ? rows : cs)));
    else fail("matmul", "internal error: matrix view is neither row- nor column-contiguous");
}

template <Real T>
using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;

// C (M x N, rows ldc apart) = A (M x K) · B (K x N), or += with `accumulate`, on the calling
// thread; A and B are 2-D views given by pointer + strides.
template <Real T>
void gemm_on_thread(const T* a, Index ars, Index acs, const T* b, Index brs, Index bcs, T* c, Index ldc, Index M, Index K,
                    Index N, bool accumulate) {
    OutMap<T> C(c, M, N, Eigen::OuterStride<>(ldc));
    if (K == 0) {
        if (!accumulate) C.setZero();
        return;
    }
    if (K == 1) {
        // An outer product (a Linear layer's input gradient for one output): written row by
        // row, where the GEMM would zero C and then run its kernel at depth 1 (and Eigen's
        // outer product was slower still). Each element is the same single product.
        std::vector<T> b_row(static_cast<std::size_t>(N));
        for (Index j = 0; j < N; ++j) b_row[static_cast<std::size_t>(j)] = b[j * bcs];
        for (Index i = 0; i < M; ++i) {
            const T a_i = a[i * ars];
            T* c_row = c + i * ldc;
            if (accumulate)
                for (Index j = 0; j < N; ++j) c_row[j] += a_i * b_row[static_cast<std::size_t>(j)];
            else
                for (Index j = 0; j < N; ++j) c_row[j] = a_i * b_row[static_cast<std::size_t>(j)];
        }
        return;
    }
    with_matrix(a, M, K, ars, acs, [&](const auto& A) {
        with_matrix(b, K, N, brs, bcs, [&](const auto& B) {
            if (accumulate) C.noalias() += A * B;
            else C.noalias() = A * B;
        });
    });
}

// C (M x N, contiguous) = A (M x K) · B (K x N), or += with `accumulate`. A large product is
// cut into one block of C's columns (or rows, when C is taller than wide) per thread, each an
// Eigen GEMM on one thread, claimed from the pool like any loop's pieces (a block whose
// thread is late is taken by the caller). Cutting along the longer side of C means the
// operand every block repacks is the smaller one: A (M·K) for column blocks, B (K·N) for row
// blocks, against M·K·N multiply-adds. A block holds at least kMinBlockWork of them. More
// blocks than threads made the products of bench_core 15-20% slower (smaller GEMMs, each
// packing its operands again); one per thread beat Eigen's own OpenMP threading by up to a
// fifth on the 64-row shape.
inline constexpr Index kMinBlockWork = Index{1} << 17;
template <Real T>
void gemm(const T* a, Index ars, Index acs, const T* b, Index brs, Index bcs, T* c, Index M, Index K, Index N,
          bool accumulate = false) {
    const bool by_columns = N >= M;
    const Index side = by_columns ? N : M, granule = by_columns ? 16 : 8;
    const Index most = std::min<Index>(num_threads(), M * N * K / kMinBlockWork);
    const Index blocks = std::min<Index>(most, std::max<Index>(side / granule, 1));
    if (blocks <= 1 || in_parallel_region()) {
        gemm_on_thread(a, ars, acs, b, brs, bcs, c, N, M, K, N, accumulate);
        return;
    }
    const Index step = round_up((side + blocks - 1) / blocks, granule);
    parallel_for((side + step - 1) / step, [&](Index i) {
        const Index first = i * step, count = std::min(step, side - first);
        if (by_columns) gemm_on_thread(a, ars, acs, b + first * bcs, brs, bcs, c + first, N, M, K, count, accumulate);
        else gemm_on_thread(a + first * ars, ars, acs, b, brs, bcs, c + first * N, N, count, K, N, accumulate);
    });
}

// A matrix stored column by column with no gaps ([N, K] with strides (1, N), N > 1).
template <Real T>
bool is_column_major(const Tensor<T>& t) {
    return t.rank() == 2 && t.dim(0) > 1 && t.dim(1) > 1 && t.strides()[0] == 1 && t.strides()[1] == t.dim(0);
}

// A 2-D slice whose rows or columns are contiguous, or else a contiguous copy.
template <Real T>
Tensor<T> matrix_ready(const Tensor<T>& t) {
    const int r = t.rank();
    const Index rs = t.strides()[static_cast<std::size_t>(r - 2)], cs = t.strides()[static_cast<std::size_t>(r - 1)];
    const bool ok = cs == 1 || rs == 1 || t.dim(-1) == 1 || t.dim(-2) == 1;
    bool batch_ok = true;
    if (r == 3) batch_ok = t.strides()[0] != 0 || t.dim(0) == 1;
    return ok && batch_ok ? t : t.contiguous();
}

}  // namespace detail

/// [M,K] x [K,N], [B,M,K] x [B,K,N] (batched), or [B,M,K] x [K,N] (shared right factor).
template <Real T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) {
    const Shape &sa = a.shape(), &sb = b.shape();
    const bool shapes_ok = (sa.rank() == 2 && sb.rank() == 2) || (sa.rank() == 3 && sb.rank() == 3 && sa[0] == sb[0]) ||
                           (sa.rank() == 3 && sb.rank() == 2);
    EMBER_CHECK(shapes_ok, "matmul", "unsupported shapes ", sa.str(), " x ", sb.str(),
                "; expected [M,K]x[K,N], [B,M,K]x[B,K,N] or [B,M,K]x[K,N]");
    EMBER_CHECK(sa.dim(-1) == sb.dim(-2), "matmul", "inner dimensions differ: ", sa.str(), " x ", sb.str());
    if (sa.rank() == 3 && sb.rank() == 2) {  // fold the batch into the rows: one GEMM
        const Var<T> y = matmul(reshape(a, Shape{sa[0] * sa[1], sa[2]}), b);
        return reshape(y, Shape{sa[0], sa[1], sb[1]});
    }
    const Tensor<T> A = detail::matrix_ready(a.value()), B = detail::matrix_ready(b.value());
    const Index M = sa.dim(-2), K = sa.dim(-1), N = sb.dim(-1);
    Tensor<T> C = sa.rank() == 2 ? Tensor<T>::empty(Shape{M, N}) : Tensor<T>::empty(Shape{sa[0], M, N});
    const Index batches = sa.rank() == 2 ? 1 : sa[0];
    const int r = sa.rank();
    const auto& as = A.strides();
    const auto& bs = B.strides();
    for (Index i = 0; i < batches; ++i) {
        const T* pa = A.data() + (r == 3 ? i * as[0] : 0);
        const T* pb = B.data() + (r == 3 ? i * bs[0] : 0);
        detail::gemm(pa, as[static_cast<std::size_t>(r - 2)], as[static_cast<std::size_t>(r - 1)], pb,
                     bs[static_cast<std::size_t>(r - 2)], bs[static_cast<std::size_t>(r - 1)], C.data() + i * M * N, M, K, N);
    }
    return record("matmul", C, {a, b}, [a, b](const Var<T>& g, std::span<const bool> need) {
        std::vector<Var<T>> out(2);
        if (need[0]) out[0] = matmul(g, transpose(b));
        if (need[1]) out[1] = matmul(transpose(a), g);
        return out;
    });
}

/// The affine map of a Linear layer with PyTorch's weight layout: x [N, in], weight
/// [out, in], optional bias [out] -> x·weightᵀ + bias [N, out]. One GEMM, which accumulates
/// onto the bias rows (so the output is written once, not zeroed first). Backward, with
/// public ops so twice differentiable:
///
///     dx = g·weight,  dweight = gᵀ·x (contiguous, in the weight's own layout),  dbias = Σ_rows g.
/// Through matmul(x, transpose(weight)) the weight's gradient would come back as a
/// transposed view and be copied element by element into the parameter's gradient.
template <Real T>
Var<T> linear(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = {}) {
    const Shape &xs = x.shape(), &ws = weight.shape();
    EMBER_CHECK(xs.rank() == 2 && ws.rank() == 2 && xs[1] == ws[1], "linear", "expected x [N,in] and weight [out,in], got ",
                xs.str(), " and ", ws.str());
    const Index N = xs[0], in = xs[1], out = ws[0];
    EMBER_CHECK(!bias.defined() || bias.shape() == Shape{out}, "linear", "bias shape ", bias.shape().str(),
                " does not match ", out, " outputs");
    const Tensor<T> X = detail::matrix_ready(x.value()), W = detail::matrix_ready(weight.value());
    Tensor<T> Y = Tensor<T>::empty(Shape{N, out});
    detail::OutMap<T> Ym(Y.data(), N, out, Eigen::OuterStride<>(out));
    const Tensor<T> b = bias.defined() ? bias.value().contiguous() : Tensor<T>{};
    auto bias_row = [&] { return Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(b.data(), out); };
    if (const auto* packed = detail::packed_weight(weight, detail::WeightUse::forward, N)) {
        // Inside a ConstantWeights scope: the weight's panels are packed already.
        if (bias.defined()) Ym.rowwise() = bias_row();
        else Ym.setZero();
        const Tensor<T> Xr = X.strides()[1] == 1 ? X : X.contiguous();
        detail::gemm_packed(*packed, Xr.data(), Xr.strides()[0], N, Y.data());
    } else {
        // weightᵀ is the [in, out] view with the strides swapped; the product accumulates
        // onto the bias rows.
        if (bias.defined()) Ym.rowwise() = bias_row();
        detail::gemm(X.data(), X.strides()[0], X.strides()[1], W.data(), W.strides()[1], W.strides()[0], Y.data(), N, in,
                     out, bias.defined());
    }
    auto backward = [x, weight](const Var<T>& g, std::span<const bool> need) {
        std::vector<Var<T>> d(need.size());
        const bool need_bias = need.size() > 2 && need[2];
        if (grad_enabled()) {  // create_graph: recorded ops, so the gradient is differentiable
            if (need[0]) d[0] = matmul(g, weight);
            if (need[1]) d[1] = matmul(transpose(g), x);
            if (need_bias) d[2] = sum(g, 0);
            return d;
        }
        // First order: plain GEMMs. dx and dweight are independent products of equal cost,
        // so with two or more threads they run side by side, one thread each (Eigen's GEMM
        // does not split itself inside a parallel region); a single 64-row GEMM split
        // across two threads scales far worse than two GEMMs on one thread each.
        const Tensor<T> G = detail::matrix_ready(g.value());
        const Index n = G.dim(0), out_features = G.dim(1);
        const auto gs = G.strides();
        std::array<Tensor<T>, 3> r;
        // Looked up here, on the thread that holds the ConstantWeights scope, if any.
        const auto* packed = need[0] ? detail::packed_weight(weight, detail::WeightUse::backward, n) : nullptr;
        auto job = [&](std::int64_t which) {
            if (which == 0 && packed) {  // dx = g · weight on the stored panels
                r[0] = Tensor<T>::zeros(x.shape());
                const Tensor<T> Gr = gs[1] == 1 ? G : G.contiguous();
                detail::gemm_packed(*packed, Gr.data(), Gr.strides()[0], n, r[0].data());
            } else if (which == 0 && detail::is_column_major(x.value())) {
                // dxᵀ [in, N] = weightᵀ · gᵀ: dx in x's layout (e.g. a convolution's output with
                // the samples in the fastest-varying position, flattened)
                const Tensor<T> W = detail::matrix_ready(weight.value());
                r[0] = Tensor<T>::empty_like(x.value());
                detail::gemm(W.data(), W.strides()[1], W.strides()[0], G.data(), gs[1], gs[0], r[0].data(), W.dim(1),
                             out_features, n);
            } else if (which == 0) {  // dx [N, in] = g [N, out] · weight [out, in]
                const Tensor<T> W = detail::matrix_ready(weight.value());
                r[0] = Tensor<T>::empty(x.shape());
                detail::gemm(G.data(), gs[0], gs[1], W.data(), W.strides()[0], W.strides()[1], r[0].data(), n,
                             out_features, W.dim(1));
            } else {  // dweight [out, in] = gᵀ [out, N] · x [N, in]; dbias = Σ_rows g
                const Tensor<T> X = detail::matrix_ready(x.value());
                r[1] = Tensor<T>::empty(weight.shape());
                detail::gemm(G.data(), gs[1], gs[0], X.data(), X.strides()[0], X.strides()[1], r[1].data(),
                             out_features, n, X.dim(1));
            }
        };
        // Below ~1 MFLOP per product the parallel region costs more than it saves (and
        // on a busy machine it can wait a whole scheduler slice for the second thread).
        const bool large = n * out_features * x.dim(1) >= (Index{1} << 19);
        if (need[0] && need[1] && large) parallel_for(2, job);
        else if (need[0] && need[1]) job(0), job(1);
        else if (need[0]) job(0);
        else if (need[1]) job(1);
        if (need[0]) d[0] = Var<T>(std::move(r[0]));
        if (need[1]) d[1] = Var<T>(std::move(r[1]));
        if (need_bias) d[2] = sum(g, 0);
        return d;
    };
    if (bias.defined()) return record("linear", std::move(Y), {x, weight, bias}, backward);
    return record("linear", std::move(Y), {x, weight}, backward);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_LINALG_INSTANCES(X, T) \
    X template Var<T> matmul<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> linear<T>(const Var<T>&, const Var<T>&, const Var<T>&);
EMBER_EXTERN_INSTANCES(EMBER_LINALG_INSTANCES)

}  // namespace ember
