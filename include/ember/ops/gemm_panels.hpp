#pragma once
/// \file
/// ember's GEMM kernel, used where a product runs on one thread: the packed weights of
/// ConstantWeights (packed_weights.hpp: A, a layer's weight, packed once into row panels; B,
/// the few dozen input rows of a sampler's chains, packed per call into column panels) and
/// each thread's products inside the convolutions (ops/conv/, gemm_row_major).
///
/// Register tile: GemmTile::rows = 3 SIMD vectors of C's rows by GemmTile::cols columns, all
/// of it held in registers while the kernel runs down the depth:
///
///     for each k:  a₀, a₁, a₂ = A[tile rows, k]            (3 vector loads)
///                  for each j < cols: b = B[k, j]         (one broadcast)
///                      acc[r][j] += a_r · b               (3 FMAs)
/// With 32 vector registers (AVX-512) the tile is 3 vectors x 8 columns: 24 accumulators,
/// 3 + 8 loads per 24 FMAs. Eigen's kernel (gebp) uses 3 x 4 with 7 loads per 12 FMAs and
/// measured 150-175 GFLOP/s per core on an AVX-512 Zen 5 core where this tile measured
/// 220-245 (single thread, the latent samplers' shapes; a plain FMA loop peaks at 250 there).
/// With 16 registers (AVX2) the tile is 3 x 4, as Eigen's.
///
/// Panels are zero-padded to whole tiles, so the inner loop has no edge cases; only the
/// store of an edge tile is clipped. The depth is cut into chunks of kPanelDepth, so that one
/// row panel of A (48 KB: 48 floats or 24 doubles by 256) stays in L1 while the kernel meets
/// every column panel of B.
#include <algorithm>
#include <cstddef>
#include <vector>

#include <Eigen/Core>
#include "ember/core/simd.hpp"

#include "ember/core/shape.hpp"

namespace ember::detail {

template <class T>
struct GemmTile {
    using Batch = xsimd::batch<T>;
    static constexpr Index lanes = static_cast<Index>(Batch::size);
    static constexpr Index rows = 3 * lanes;
    // 3 + 1 vector registers for the operands, the rest for accumulators.
    static constexpr Index cols = sizeof(Batch) >= 64 ? 8 : 4;
};

inline constexpr Index kPanelDepth = 256;

template <class T>
using PanelBuffer = std::vector<T, Eigen::aligned_allocator<T>>;

inline Index round_up(Index n, Index multiple) { return (n + multiple - 1) / multiple * multiple; }

// Packs rows [0, rows) x depth [k0, k0 + kc) of A (element (i, k) at a[i·rs + k·ds]) as one
// row panel: kc tile-row vectors, one per k (rows past `rows`, up to GemmTile::rows, are 0).
template <class T>
void pack_row_panel(const T* a, Index rows, Index k0, Index kc, Index rs, Index ds, T* dst) {
    constexpr Index R = GemmTile<T>::rows;
    if (rows < R)
        for (Index k = 0; k < kc; ++k) std::fill(dst + k * R + rows, dst + (k + 1) * R, T(0));
    if (rs == 1) {  // the panel's rows are contiguous in A: copy runs of `rows`, in whole vectors
        using Batch = typename GemmTile<T>::Batch;
        constexpr Index L = GemmTile<T>::lanes;
        const Index whole = rows / L * L;
        for (Index k = 0; k < kc; ++k) {
            const T* from = a + (k0 + k) * ds;
            T* to = dst + k * R;
            for (Index i = 0; i < whole; i += L) Batch::load_unaligned(from + i).store_unaligned(to + i);
            std::copy(from + whole, from + rows, to + whole);
        }
        return;
    }
    for (Index i = 0; i < rows; ++i)
        for (Index k = 0; k < kc; ++k) dst[k * R + i] = a[i * rs + (k0 + k) * ds];
}

// Packs all of A (rows x depth) into `out`: for each depth chunk of kPanelDepth, its row
// panels one after another.
template <class T>
void pack_row_panels(const T* a, Index rows, Index depth, Index rs, Index ds, PanelBuffer<T>& out) {
    constexpr Index R = GemmTile<T>::rows;
    out.resize(static_cast<std::size_t>(round_up(rows, R) * depth));
    T* dst = out.data();
    for (Index k0 = 0; k0 < depth; k0 += kPanelDepth) {
        const Index kc = std::min(kPanelDepth, depth - k0);
        for (Index i0 = 0; i0 < rows; i0 += R, dst += R * kc)
            pack_row_panel(a + i0 * rs, std::min(R, rows - i0), k0, kc, rs, ds, dst);
    }
}

// Packs one depth chunk [k0, k0 + kc) of B (depth x cols, element (k, j) at b[k·ks + j·js])
// into column panels of GemmTile::cols: for each panel, kc rows of GemmTile::cols values
// (columns past `cols` are 0).
template <class T>
void pack_column_panels(const T* b, Index ks, Index js, Index cols, Index k0, Index kc, T* dst) {
    constexpr Index C = GemmTile<T>::cols;
    for (Index j0 = 0; j0 < cols; j0 += C, dst += C * kc) {
        const Index nc = std::min(C, cols - j0);
        if (js == 1) {  // a panel's row is a run of B's row: read along it, not down B's columns
            for (Index k = 0; k < kc; ++k) {
                const T* src = b + (k0 + k) * ks + j0;
                for (Index j = 0; j < C; ++j) dst[k * C + j] = j < nc ? src[j] : T(0);
            }
            continue;
        }
        for (Index j = 0; j < nc; ++j) {
            const T* src = b + (j0 + j) * js + k0 * ks;
            for (Index k = 0; k < kc; ++k) dst[k * C + j] = src[k * ks];
        }
        for (Index j = nc; j < C; ++j)
            for (Index k = 0; k < kc; ++k) dst[k * C + j] = T(0);
    }
}

// Runs body(k0, kc, panels) for each depth chunk [k0, k0 + kc) of B (depth x cols, element
// (k, j) at b[k·ks + j·js]), the chunk packed into column panels in a per-thread buffer.
template <class T, class Body>
void for_packed_depth_chunks(const T* b, Index ks, Index js, Index cols, Index depth, Body&& body) {
    thread_local PanelBuffer<T> panels;
    const auto need = static_cast<std::size_t>(std::min(kPanelDepth, depth) * round_up(cols, GemmTile<T>::cols));
    if (panels.size() < need) panels.resize(need);
    for (Index k0 = 0; k0 < depth; k0 += kPanelDepth) {
        const Index kc = std::min(kPanelDepth, depth - k0);
        pack_column_panels(b, ks, js, cols, k0, kc, panels.data());
        body(k0, kc, static_cast<const T*>(panels.data()));
    }
}

// One register tile of gemm_row_panel: columns [j0, j0 + NC) of the panel's product, of
// which the first `nc` exist (NC <= GemmTile::cols; `bp` is the column panel, GemmTile::cols
// wide). The stores are unrolled so that the accumulators stay in registers.
template <Index NC, class T, class LoadA, class Store>
inline void gemm_tile(LoadA& load_a, const T* bp, Index j0, Index nc, Index kc, Store& store) {
    using Batch = typename GemmTile<T>::Batch;
    constexpr Index C = GemmTile<T>::cols;
    Batch acc[3][NC];
    for (Index j = 0; j < NC; ++j) acc[0][j] = acc[1][j] = acc[2][j] = Batch(T(0));
    const T* bk = bp;
    for (Index k = 0; k < kc; ++k, bk += C) {
        const Batch a0 = load_a(k, 0), a1 = load_a(k, 1), a2 = load_a(k, 2);
#pragma GCC unroll 8
        for (Index j = 0; j < NC; ++j) {
            const Batch bj(bk[j]);
            acc[0][j] = xsimd::fma(a0, bj, acc[0][j]);
            acc[1][j] = xsimd::fma(a1, bj, acc[1][j]);
            acc[2][j] = xsimd::fma(a2, bj, acc[2][j]);
        }
    }
#pragma GCC unroll 8
    for (Index j = 0; j < NC; ++j)
        if (j < nc) {
            store(j0 + j, Index{0}, acc[0][j]);
            store(j0 + j, Index{1}, acc[1][j]);
            store(j0 + j, Index{2}, acc[2][j]);
        }
}

// C += A·B for one depth chunk and one row panel of A (at most GemmTile::rows rows):
// load_a(k, r) is the r-th SIMD vector (r < 3) of the panel's rows at depth k, `b` the
// chunk's column panels (pack_column_panels), and store(j, r, v) receives vector r of
// column j of the panel's product (j < cols). The panel is loaded once per column panel and
// meets every one of them. A last column panel with few columns gets a narrower tile: a
// 3x3 convolution's input gradient has 9 columns, and the 9th would cost a whole tile.
template <class T, class LoadA, class Store>
void gemm_row_panel(LoadA&& load_a, const T* b, Index cols, Index kc, Store&& store) {
    constexpr Index C = GemmTile<T>::cols;
    const T* bp = b;
    for (Index j0 = 0; j0 < cols; j0 += C, bp += C * kc) {
        const Index nc = std::min(C, cols - j0);
        if (nc > C / 2)
            gemm_tile<C>(load_a, bp, j0, nc, kc, store);
        else if (nc > C / 4)
            gemm_tile<C / 2>(load_a, bp, j0, nc, kc, store);
        else
            gemm_tile<C / 4>(load_a, bp, j0, nc, kc, store);
    }
}

// The load_a of gemm_row_panel for a row panel packed by pack_row_panel (one depth chunk):
// vector r of depth k at panel[k·GemmTile::rows + r·lanes].
template <class T>
auto packed_panel_loader(const T* panel) {
    return [panel](Index k, Index r) {
        return GemmTile<T>::Batch::load_aligned(panel + k * GemmTile<T>::rows + r * GemmTile<T>::lanes);
    };
}

// The identity as the finishing step of column_major_store.
struct KeepProduct {
    template <class Batch>
    [[gnu::always_inline]] Batch operator()(Index, Batch v) const {
        return v;
    }
};

// The store of gemm_row_panel into C, column-major with leading dimension ldc, of which the
// panel covers `rows` rows: C = finish(j, product), or finish(j, C + product) when
// accumulating (the later depth chunks of a product: the first needs no separate pass to
// zero C). `finish` is the place for work on the result while it is in registers (a bias,
// an activation: ops/conv/epilogue.hpp).
// (A struct rather than a lambda: gemm_tile calls it 3·GemmTile::cols times, and it must be
// inlined for the accumulators to stay in registers.)
template <class T, class Finish = KeepProduct>
struct ColumnMajorStore {
    using Batch = typename GemmTile<T>::Batch;
    static constexpr Index L = GemmTile<T>::lanes;
    T* c;
    Index ldc, rows;
    bool accumulate;
    Finish finish{};

    [[gnu::always_inline]] void operator()(Index j, Index r, Batch v) const {
        T* to = c + j * ldc + r * L;
        const Index n = std::min(L, rows - r * L);
        if (n == L) {
            if (accumulate) v += Batch::load_unaligned(to);
            finish(j, v).store_unaligned(to);
        } else if (n > 0) {  // the last row panel: only its first rows exist in C
            alignas(64) T tile[L] = {};
            if (accumulate) {
                std::copy_n(to, n, tile);
                v += Batch::load_aligned(tile);
            }
            finish(j, v).store_aligned(tile);
            std::copy_n(tile, n, to);
        }
    }
};
template <class T, class Finish = KeepProduct>
ColumnMajorStore<T, Finish> column_major_store(T* c, Index ldc, Index rows, bool accumulate, Finish finish = {}) {
    return {c, ldc, rows, accumulate, finish};
}

// The same over all row panels of A, packed (pack_row_panels' layout for one depth chunk).
template <class T>
void gemm_panels(const T* a, const T* b, Index rows, Index cols, Index kc, T* c, Index ldc, bool accumulate = true) {
    constexpr Index R = GemmTile<T>::rows;
    for (Index i0 = 0; i0 < rows; i0 += R, a += R * kc)
        gemm_row_panel<T>(packed_panel_loader(a), b, cols, kc, column_major_store(c + i0, ldc, std::min(R, rows - i0), accumulate));
}

// C (+)= A·B on one thread for any strides: A (m x k) element (i, p) at a[i·a_rs + p·a_cs],
// B (k x n) element (p, j) at b[p·b_rs + j·b_cs], C (m x n) column-major with leading
// dimension ldc (C's rows, the kernel's vector direction, are contiguous). For each depth
// chunk B is packed once and each row panel of A is packed just before its use, while it
// is hot (GotoBLAS's loop order with one tile-row panel as the block of A).
template <class T>
void gemm_strided(Index m, Index n, Index k, const T* a, Index a_rs, Index a_cs, const T* b, Index b_rs, Index b_cs,
                  T* c, Index ldc, bool accumulate) {
    constexpr Index R = GemmTile<T>::rows;
    if (m == 0 || n == 0) return;
    if (k == 0) {  // an empty sum: C = 0, or C unchanged
        if (!accumulate)
            for (Index j = 0; j < n; ++j) std::fill_n(c + j * ldc, m, T(0));
        return;
    }
    thread_local PanelBuffer<T> a_panel;
    const auto a_size = static_cast<std::size_t>(R * std::min(kPanelDepth, k));
    if (a_panel.size() < a_size) a_panel.resize(a_size);
    for_packed_depth_chunks(b, b_rs, b_cs, n, k, [&](Index k0, Index kc, const T* b_panels) {
        for (Index i0 = 0; i0 < m; i0 += R) {
            const Index rows = std::min(R, m - i0);
            pack_row_panel(a + i0 * a_rs, rows, k0, kc, a_rs, a_cs, a_panel.data());
            gemm_panels(a_panel.data(), b_panels, rows, n, kc, c + i0, ldc, accumulate || k0 > 0);
        }
    });
}

// C [M, N] (+)= op(A) · op(B) with row-major operands on one thread, op = transpose when
// asked (A stored [K, M], B stored [N, K]). Computed as Cᵀ = op(B)ᵀ · op(A)ᵀ in column-major
// terms, so the kernel's vector direction runs along C's rows, N long.
template <class T>
void gemm_row_major(const T* a, bool trans_a, const T* b, bool trans_b, T* c, Index M, Index N, Index K,
                    bool accumulate) {
    const Index bt_rs = trans_b ? K : 1, bt_cs = trans_b ? 1 : N;  // op(B)ᵀ (N x K), the kernel's A
    const Index at_rs = trans_a ? M : 1, at_cs = trans_a ? 1 : K;  // op(A)ᵀ (K x M), the kernel's B
    gemm_strided(N, M, K, b, bt_rs, bt_cs, a, at_rs, at_cs, c, N, accumulate);
}

}  // namespace ember::detail
