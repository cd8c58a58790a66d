#pragma once
// The fused kernels: evaluate an expression tree (expr.hpp) over SIMD batches in one pass
// over memory, forward, and forward-then-backward for gradients. Leaves may broadcast
// (NumPy rules): their strides in output-index space are 0 along broadcast axes. The
// loops run over rows of the last axis; when every leaf is either full-shape contiguous or
// a single element the whole tensor is one row, split across threads.
#include <array>
#include <cstring>
#include <vector>

#include "ember/core/threading.hpp"
#include "ember/expr/expr.hpp"

namespace ember::expr {

template <Real T> using Batch = xsimd::batch<T>;

// Where each leaf slot reads from while the kernel walks one row.
template <Real T, int L>
struct RowPointers {
    std::array<const T*, L> ptr{};
    std::array<bool, L> splat{};  // the slot is constant along the row
};

template <Real T, int L>
struct ForwardContext {
    using V = Batch<T>;
    RowPointers<T, L> row;
    Index j = 0;
    template <int K> V load() const { return row.splat[K] ? V(*row.ptr[K]) : V::load_unaligned(row.ptr[K] + j); }
    V splat(T v) const { return V(v); }
    static constexpr bool needs(int, int) { return true; }
};

template <Real T, int L>
struct BackwardContext : ForwardContext<T, L> {
    using V = Batch<T>;
    std::array<V, L> adj{};
    template <int K> void accumulate(const V& g) { adj[K] += g; }
};

// The layout of the loop: output shape and every slot's strides in output index space.
template <Real T>
struct LoopLayout {
    Shape shape;
    std::vector<const T*> base;
    std::vector<Strides> strides;
    bool flat = true;  // every slot is full-shape contiguous or a single element

    Index rows() const { return shape.rank() ? shape.numel() / std::max<Index>(inner(), 1) : 1; }
    Index inner() const { return shape.rank() ? shape[shape.rank() - 1] : 1; }
};

// Views every leaf as a tensor broadcast to the common shape. Leaves whose last axis is
// strided (e.g. a transposed view) are first made contiguous so rows load as vectors.
template <Real T>
LoopLayout<T> plan_loop(std::vector<LeafRef<T>>& leaves, const char* op) {
    LoopLayout<T> lay;
    for (auto& l : leaves) lay.shape = broadcast_shapes(lay.shape, l.tensor.shape(), op);
    const Strides full = lay.shape.contiguous_strides();
    const int r = lay.shape.rank();
    for (auto& l : leaves) {
        Tensor<T> e = l.tensor.expand(lay.shape);
        if (r && e.strides()[static_cast<std::size_t>(r - 1)] > 1) {
            l.tensor = l.tensor.contiguous();
            e = l.tensor.expand(lay.shape);
        }
        bool contiguous = true, single = l.tensor.numel() == 1;
        for (int d = 0; d < r; ++d)
            if (lay.shape[d] > 1 && e.strides()[static_cast<std::size_t>(d)] != full[static_cast<std::size_t>(d)]) contiguous = false;
        lay.flat = lay.flat && (contiguous || single);
        lay.base.push_back(e.data());
        lay.strides.push_back(e.strides());
    }
    return lay;
}

template <Real T>
Index row_offset(const Shape& s, const Strides& st, Index row) {
    Index off = 0;
    for (int d = s.rank() - 2; d >= 0; --d) {
        off += (row % s[d]) * st[static_cast<std::size_t>(d)];
        row /= s[d];
    }
    return off;
}

// Points `row` at the start of a run of `len` elements: row `r` of the layout, or for the
// flat layout, elements [begin, begin + len).
template <Real T, int L>
void point_row(const LoopLayout<T>& lay, Index r, Index begin, RowPointers<T, L>& row) {
    const int rank = lay.shape.rank();
    for (int k = 0; k < L; ++k) {
        const Strides& st = lay.strides[static_cast<std::size_t>(k)];
        if (lay.flat) {
            bool single = true;
            for (int d = 0; d < rank; ++d) single = single && (st[static_cast<std::size_t>(d)] == 0 || lay.shape[d] == 1);
            row.splat[static_cast<std::size_t>(k)] = single;
            row.ptr[static_cast<std::size_t>(k)] = lay.base[static_cast<std::size_t>(k)] + (single ? 0 : begin);
        } else {
            row.splat[static_cast<std::size_t>(k)] = rank == 0 || st[static_cast<std::size_t>(rank - 1)] == 0 || lay.shape[rank - 1] == 1;
            row.ptr[static_cast<std::size_t>(k)] = lay.base[static_cast<std::size_t>(k)] + row_offset<T>(lay.shape, st, r);
        }
    }
}

// Copies the last `rem` (< batch size) elements of each vector slot into padded scratch so
// the tail is computed by the same batch code.
template <Real T, int L>
struct TailScratch {
    static constexpr std::size_t W = Batch<T>::size;
    alignas(64) T buf[L > 0 ? L : 1][W];
    void redirect(RowPointers<T, L>& row, Index j, Index rem) {
        for (int k = 0; k < L; ++k) {
            if (row.splat[static_cast<std::size_t>(k)]) continue;
            std::fill_n(buf[k], W, T(0));
            std::memcpy(buf[k], row.ptr[static_cast<std::size_t>(k)] + j, sizeof(T) * static_cast<std::size_t>(rem));
            row.ptr[static_cast<std::size_t>(k)] = buf[k];
        }
    }
};

// out[0, len) = e over one run.
template <int L, class E, Real T>
void forward_run(const E& e, RowPointers<T, L> row, Index len, T* out) {
    constexpr Index W = static_cast<Index>(Batch<T>::size);
    ForwardContext<T, L> c;
    c.row = row;
    Index j = 0;
    for (; j + W <= len; j += W) {
        c.j = j;
        e.template eval<0>(c).store_unaligned(out + j);
    }
    if (j < len) {
        TailScratch<T, L> tail;
        tail.redirect(c.row, j, len - j);
        c.j = 0;
        alignas(64) T tmp[W];
        e.template eval<0>(c).store_aligned(tmp);
        std::memcpy(out + j, tmp, sizeof(T) * static_cast<std::size_t>(len - j));
    }
}

// Evaluates e into the contiguous tensor `out` (whose shape is the broadcast shape).
template <class E, Real T>
void evaluate_into(const E& e, std::vector<LeafRef<T>>& leaves, const LoopLayout<T>& lay, T* out) {
    constexpr int L = E::leaves;
    constexpr Index W = static_cast<Index>(Batch<T>::size);
    const Index n = lay.shape.numel();
    if (n == 0) return;
    if (lay.flat) {
        parallel_chunks(n, 1 << 15, W, [&](Index b, Index end) {
            RowPointers<T, L> row;
            point_row<T, L>(lay, 0, b, row);
            forward_run<L>(e, row, end - b, out + b);
        });
    } else {
        const Index inner = lay.inner(), rows = lay.rows();
        auto body = [&](Index r0, Index r1) {
            for (Index r = r0; r < r1; ++r) {
                RowPointers<T, L> row;
                point_row<T, L>(lay, r, 0, row);
                forward_run<L>(e, row, inner, out + r * inner);
            }
        };
        if (n < (1 << 15)) body(0, rows);
        else parallel_chunks(rows, 1, 1, body);
    }
    (void)leaves;
}

// Where one distinct input's gradient goes: a buffer of the input's shape, viewed with
// strides in output-index space (0 along broadcast axes, which the kernel sums over).
template <Real T>
struct GradTarget {
    T* base = nullptr;
    Strides strides{};
    bool full = false;  // same shape as the output: plain stores, no accumulation
};

// For every distinct input d: grad_d = sum over its leaf slots of g * ∂e/∂slot, reduced
// over broadcast axes, in one pass that recomputes the forward values in registers.
template <class E, Real T>
void backward_into(const E& e, const LoopLayout<T>& lay, const Tensor<T>& g,
                   const std::vector<int>& slot_to_input, std::vector<GradTarget<T>>& targets) {
    constexpr int L = E::leaves;
    constexpr Index W = static_cast<Index>(Batch<T>::size);
    using V = Batch<T>;
    const Index n = lay.shape.numel();
    if (n == 0 || targets.empty()) return;
    const int rank = lay.shape.rank();
    Tensor<T> ge = g.expand(lay.shape);
    if (rank && ge.strides()[static_cast<std::size_t>(rank - 1)] > 1) ge = g.contiguous().expand(lay.shape);
    const int D = static_cast<int>(targets.size());

    bool all_full = true;
    for (auto& t : targets) all_full = all_full && t.full;
    bool g_contig = ge.is_contiguous() || g.numel() == 1;

    auto run = [&](const LoopLayout<T>& lay, const RowPointers<T, L>& row, const T* gp, bool g_splat, Index len, Index r,
                   Index begin) {
        // Per target: pointer and whether it is constant along this run.
        std::array<T*, L> tp{};
        std::array<bool, L> tsplat{};
        for (int d = 0; d < D; ++d) {
            const auto& t = targets[static_cast<std::size_t>(d)];
            if (lay.flat && t.full) {
                tp[static_cast<std::size_t>(d)] = t.base + begin;
                tsplat[static_cast<std::size_t>(d)] = false;
            } else if (lay.flat) {  // flat layout: a non-full target is a single element
                tp[static_cast<std::size_t>(d)] = t.base;
                tsplat[static_cast<std::size_t>(d)] = true;
            } else {
                tp[static_cast<std::size_t>(d)] = t.base + row_offset<T>(lay.shape, t.strides, r);
                tsplat[static_cast<std::size_t>(d)] = rank == 0 || t.strides[static_cast<std::size_t>(rank - 1)] == 0 || lay.shape[rank - 1] == 1;
            }
        }
        BackwardContext<T, L> c;
        c.row = row;
        auto step = [&](Index j, Index valid, const V& gv) {
            c.adj.fill(V(T(0)));
            auto rec = e.template record<0>(c);
            e.template backprop<0>(c, rec, gv);
            std::array<V, L> acc;
            acc.fill(V(T(0)));
            for (int k = 0; k < L; ++k) {
                const int d = slot_to_input[static_cast<std::size_t>(k)];
                if (d >= 0) acc[static_cast<std::size_t>(d)] += c.adj[static_cast<std::size_t>(k)];
            }
            for (int d = 0; d < D; ++d) {
                T* p = tp[static_cast<std::size_t>(d)];
                const V& a = acc[static_cast<std::size_t>(d)];
                // A full target is written once (when its rows have length 1 it also
                // looks constant along the row, but must still be stored, not summed).
                const bool full = targets[static_cast<std::size_t>(d)].full;
                if (valid == W) {
                    if (full) a.store_unaligned(p + j);
                    else if (tsplat[static_cast<std::size_t>(d)]) *p += xsimd::hadd(a);
                    else (V::load_unaligned(p + j) + a).store_unaligned(p + j);
                } else {
                    alignas(64) T tmp[W];
                    a.store_aligned(tmp);
                    if (full) {
                        std::memcpy(p + j, tmp, sizeof(T) * static_cast<std::size_t>(valid));
                    } else if (tsplat[static_cast<std::size_t>(d)]) {
                        T s = 0;
                        for (Index i = 0; i < valid; ++i) s += tmp[i];
                        *p += s;
                    } else {
                        for (Index i = 0; i < valid; ++i) p[j + i] += tmp[i];
                    }
                }
            }
        };
        Index j = 0;
        for (; j + W <= len; j += W) {
            c.j = j;
            step(j, W, g_splat ? V(*gp) : V::load_unaligned(gp + j));
        }
        if (j < len) {
            TailScratch<T, L> tail;
            tail.redirect(c.row, j, len - j);
            c.j = 0;
            alignas(64) T gt[W] = {};
            if (g_splat) std::fill_n(gt, W, *gp);
            else std::memcpy(gt, gp + j, sizeof(T) * static_cast<std::size_t>(len - j));
            step(j, len - j, V::load_aligned(gt));
        }
    };

    if (lay.flat && g_contig) {
        const bool g_splat = g.numel() == 1;
        auto body = [&](Index b, Index end) {
            RowPointers<T, L> row;
            point_row<T, L>(lay, 0, b, row);
            run(lay, row, ge.data() + (g_splat ? 0 : b), g_splat, end - b, 0, b);
        };
        // Accumulating targets are shared between threads, so only full ones go parallel.
        if (all_full) parallel_chunks(n, 1 << 14, W, body);
        else body(0, n);
    } else {
        LoopLayout<T> rows_lay = lay;
        rows_lay.flat = false;
        const Index inner = lay.inner(), rows = lay.rows();
        const bool g_splat_row = rank == 0 || ge.strides()[static_cast<std::size_t>(rank - 1)] == 0 || lay.shape[rank - 1] == 1;
        for (Index r = 0; r < rows; ++r) {
            RowPointers<T, L> row;
            point_row<T, L>(rows_lay, r, 0, row);
            const T* gp = ge.data() + row_offset<T>(lay.shape, ge.strides(), r);
            run(rows_lay, row, gp, g_splat_row, inner, r, 0);
        }
    }
}

}  // namespace ember::expr
