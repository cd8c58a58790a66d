#pragma once
// Matrix products through Eigen's GEMM on Eigen::Maps of our own buffers: no copies, no
// second BLAS. A transposed view (strides swapped) is passed to Eigen as a transposed map.
// Backward: dA = G Bᵀ, dB = Aᵀ G, written with matmul itself, so twice differentiable.
#include <Eigen/Core>

#include "ember/ops/shape.hpp"

namespace ember {

namespace detail {

template <Real T>
using RowMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;
template <Real T>
using ColMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>, 0, Eigen::OuterStride<>>;
template <Real T>
using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// Calls f with an Eigen expression for the rows x cols matrix at p with the given
// strides: a row-major map, or a column-major map for a transposed view.
template <Real T, class F>
void with_matrix(const T* p, Index rows, Index cols, Index rs, Index cs, F&& f) {
    if (cs == 1 || cols == 1) f(RowMap<T>(p, rows, cols, Eigen::OuterStride<>(rows == 1 ? cols : rs)));
    else if (rs == 1 || rows == 1) f(ColMap<T>(p, rows, cols, Eigen::OuterStride<>(cols == 1 ? rows : cs)));
    else fail("matmul", "internal error: matrix view is neither row- nor column-contiguous");
}

// C (M x N, contiguous) = A (M x K) * B (K x N), each a 2-D view given by pointer + strides.
template <Real T>
void gemm(const T* a, Index ars, Index acs, const T* b, Index brs, Index bcs, T* c, Index M, Index K, Index N) {
    OutMap<T> C(c, M, N);
    if (K == 0) {
        C.setZero();
        return;
    }
    with_matrix(a, M, K, ars, acs, [&](const auto& A) {
        with_matrix(b, K, N, brs, bcs, [&](const auto& B) { C.noalias() = A * B; });
    });
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

// [M,K] x [K,N], [B,M,K] x [B,K,N] (batched), or [B,M,K] x [K,N] (shared right factor).
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

}  // namespace ember
