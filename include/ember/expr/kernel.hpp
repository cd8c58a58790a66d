#pragma once
// The fused kernels: evaluate an expression tree (expr.hpp) over SIMD batches in one pass
// over memory, forward, and forward-then-backward for gradients.
//
// Every array the loop touches (leaves, the incoming gradient, gradient targets) is viewed
// with strides in the output's index space, 0 along broadcast axes. Adjacent axes along
// which every array is laid out alike are then merged (as PyTorch's TensorIterator does),
// so [N,C,H,W] + bias[1,C,1,1] runs over N·C rows of H·W elements, and full-shape operands
// become one flat run split across threads. Within a row each array is either contiguous
// (stride 1) or constant (stride 0).
#include <array>
#include <cstring>
#include <span>

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

// The loop's iteration space after merging axes: `rows` rows of `inner` elements, and for
// every array its base pointer and strides over the merged axes.
struct LoopSpace {
    Shape shape;  // merged shape (rank >= 1); the last axis is the row
    Index inner() const { return shape[shape.rank() - 1]; }
    Index rows() const { return shape.numel() / std::max<Index>(inner(), 1); }
    bool flat() const { return shape.rank() == 1; }
};

// Merges adjacent axes of `shape` wherever every array in `arrays` allows it, and rewrites
// those strides for the merged shape. Axes of size 1 always merge. No allocation.
inline LoopSpace merge_axes(const Shape& shape, std::span<Strides* const> arrays) {
    const int r = shape.rank();
    // Merged axes, fastest-varying first: their size and the original axis whose stride they keep.
    std::array<Index, kMaxRank> size{};
    std::array<int, kMaxRank> rep{};
    int groups = 1;
    size[0] = r ? shape[r - 1] : 1;
    rep[0] = r - 1;
    for (int d = r - 2; d >= 0; --d) {
        const Index n = shape[d];
        if (n == 1) continue;
        const std::size_t g = static_cast<std::size_t>(groups - 1);
        if (size[g] == 1) {  // the axis so far is trivial: this one replaces it
            size[g] = n;
            rep[g] = d;
            continue;
        }
        bool merge = true;
        for (Strides* a : arrays)
            merge = merge && (*a)[static_cast<std::size_t>(d)] == (*a)[static_cast<std::size_t>(rep[g])] * size[g];
        if (merge) {
            size[g] *= n;
        } else {
            size[static_cast<std::size_t>(groups)] = n;
            rep[static_cast<std::size_t>(groups)] = d;
            ++groups;
        }
    }
    LoopSpace sp;
    std::array<Index, kMaxRank> dims{};
    for (int i = 0; i < groups; ++i) dims[static_cast<std::size_t>(i)] = size[static_cast<std::size_t>(groups - 1 - i)];
    sp.shape = Shape(std::span<const Index>(dims.data(), static_cast<std::size_t>(groups)));
    for (Strides* a : arrays) {
        Strides out{};
        for (int i = 0; i < groups; ++i) {
            const int d = rep[static_cast<std::size_t>(groups - 1 - i)];
            out[static_cast<std::size_t>(i)] = d >= 0 ? (*a)[static_cast<std::size_t>(d)] : 0;
        }
        // A row of one element is constant; loaders then broadcast it.
        if (sp.inner() == 1) out[static_cast<std::size_t>(groups - 1)] = 0;
        *a = out;
    }
    return sp;
}

// Offset of the first element of row `row` for an array with the given merged strides.
inline Index row_offset(const Shape& s, const Strides& st, Index row) {
    Index off = 0;
    for (int d = s.rank() - 2; d >= 0; --d) {
        off += (row % s[d]) * st[static_cast<std::size_t>(d)];
        row /= s[d];
    }
    return off;
}

inline Index last_stride(const Shape& s, const Strides& st) {
    return s.rank() ? st[static_cast<std::size_t>(s.rank() - 1)] : 0;
}

// Stride along the last axis longer than 1: the axis a row runs along once
// merge_axes has dropped the axes of size 1. (Checking the last axis instead misses a
// column view such as x[:, 0:1], shape [N, 1] with strides [D, 1], whose rows would then
// be read as if contiguous.)
inline Index row_stride(const Shape& s, const Strides& st) {
    for (int d = s.rank() - 1; d >= 0; --d)
        if (s[d] != 1) return st[static_cast<std::size_t>(d)];
    return 0;
}

// Strides of `t` broadcast to `target` (0 along broadcast axes); `target` must be a valid
// broadcast of t's shape. The metadata half of Tensor::expand, without a handle copy.
template <Real T>
Strides expanded_strides(const Tensor<T>& t, const Shape& target) {
    Strides out{};
    const int off = target.rank() - t.rank();
    for (int i = 0; i < target.rank(); ++i) {
        const int src = i - off;
        out[static_cast<std::size_t>(i)] =
            (src < 0 || t.shape()[src] == 1) ? 0 : t.strides()[static_cast<std::size_t>(src)];
    }
    return out;
}

// Broadcasts every leaf to the common shape; leaves whose rows are strided (a transposed
// view, a column slice) are first made contiguous so rows load as vectors.
template <Real T, std::size_t L>
Shape broadcast_leaves(std::array<LeafRef<T>, L>& leaves, std::array<Strides, L>& strides, const char* op) {
    Shape shape;
    for (auto& l : leaves) shape = broadcast_shapes(shape, l.value().shape(), op);
    for (std::size_t k = 0; k < L; ++k) {
        LeafRef<T>& l = leaves[k];
        strides[k] = expanded_strides(l.value(), shape);
        if (row_stride(shape, strides[k]) > 1) {
            l.copy = l.value().contiguous();
            strides[k] = expanded_strides(l.copy, shape);
        }
    }
    return shape;
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

template <Real T, int L>
RowPointers<T, L> point_row(const LoopSpace& sp, const std::array<LeafRef<T>, L>& leaves,
                            const std::array<Strides, L>& st, Index row, Index begin) {
    RowPointers<T, L> p;
    for (int k = 0; k < L; ++k) {
        const Strides& s = st[static_cast<std::size_t>(k)];
        const bool splat = last_stride(sp.shape, s) == 0;
        p.splat[static_cast<std::size_t>(k)] = splat;
        p.ptr[static_cast<std::size_t>(k)] =
            leaves[static_cast<std::size_t>(k)].value().data() + row_offset(sp.shape, s, row) + (splat ? 0 : begin);
    }
    return p;
}

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

// Evaluates e into `out`, a contiguous tensor of the broadcast shape whose leaf strides are
// `st` (from broadcast_leaves).
template <class E, Real T = typename E::value_type>
void evaluate_prepared(const E& e, Leaves<E>& leaves, std::array<Strides, static_cast<std::size_t>(E::leaves)>& st,
                       const Shape& shape, T* o) {
    constexpr int L = E::leaves;
    constexpr Index W = static_cast<Index>(Batch<T>::size);
    const Index n = shape.numel();
    if (n == 0) return;
    if (n == 1) {  // scalars: one batch, no loop planning
        RowPointers<T, L> row;
        for (int k = 0; k < L; ++k) {
            row.splat[static_cast<std::size_t>(k)] = true;
            row.ptr[static_cast<std::size_t>(k)] = leaves[static_cast<std::size_t>(k)].value().data();
        }
        forward_run<L>(e, row, 1, o);  // the same code as every other run's tail
        return;
    }
    std::array<Strides*, L> arrays;
    for (int k = 0; k < L; ++k) arrays[static_cast<std::size_t>(k)] = &st[static_cast<std::size_t>(k)];
    const LoopSpace sp = merge_axes(shape, arrays);
    if (sp.flat()) {
        parallel_chunks(n, 1 << 15, W, [&](Index b, Index end) {
            forward_run<L>(e, point_row<T, L>(sp, leaves, st, 0, b), end - b, o + b);
        });
        return;
    }
    const Index inner = sp.inner();
    auto rows = [&](Index r0, Index r1) {
        for (Index r = r0; r < r1; ++r) forward_run<L>(e, point_row<T, L>(sp, leaves, st, r, 0), inner, o + r * inner);
    };
    if (n < (1 << 15)) rows(0, sp.rows());
    else parallel_chunks(sp.rows(), 1, 1, rows);
}

// The layout every leaf shares when they all have the same shape and the same dense but
// not contiguous strides (a permuted layout, such as a convolution's output can have), or null.
// Elementwise work on them runs over memory in order and keeps that layout.
template <Real T, std::size_t L>
const Tensor<T>* shared_permuted_layout(const std::array<LeafRef<T>, L>& leaves) {
    if constexpr (L == 0) {
        return nullptr;
    } else {
        const Tensor<T>& first = leaves[0].value();
        for (const auto& l : leaves)
            if (l.value().shape() != first.shape() || l.value().strides() != first.strides()) return nullptr;
        return !first.is_contiguous() && first.is_dense() ? &first : nullptr;
    }
}

// The leaves as one axis in memory order (shared_permuted_layout's case).
template <Real T, std::size_t L>
std::array<LeafRef<T>, L> in_memory_order(const std::array<LeafRef<T>, L>& leaves) {
    std::array<LeafRef<T>, L> flat = leaves;
    for (auto& l : flat) l.copy = l.value().memory_order();
    return flat;
}

// Evaluates e into a new tensor of the broadcast shape: laid out like its leaves when they
// share a dense layout, else contiguous.
template <class E, Real T = typename E::value_type>
Tensor<T> evaluate(const E& e, Leaves<E>& leaves, const char* op) {
    if (const Tensor<T>* like = shared_permuted_layout(leaves)) {
        Leaves<E> flat = in_memory_order(leaves);
        std::array<Strides, static_cast<std::size_t>(E::leaves)> st;
        const Shape shape = broadcast_leaves(flat, st, op);
        Tensor<T> out = Tensor<T>::empty_like(*like);
        evaluate_prepared(e, flat, st, shape, out.data());
        return out;
    }
    std::array<Strides, static_cast<std::size_t>(E::leaves)> st;
    const Shape shape = broadcast_leaves(leaves, st, op);
    Tensor<T> out = Tensor<T>::empty(shape);
    evaluate_prepared(e, leaves, st, shape, out.data());
    return out;
}

// Evaluates e into the existing contiguous tensor `dst` of the broadcast shape. dst may
// itself be a leaf of e: each element is read before that same element is written.
template <class E, Real T = typename E::value_type>
void evaluate_to(const E& e, const Tensor<T>& dst, const char* op) {
    auto leaves = collect_leaves(e);
    std::array<Strides, static_cast<std::size_t>(E::leaves)> st;
    const Shape shape = broadcast_leaves(leaves, st, op);
    EMBER_CHECK(shape == dst.shape(), op, "expression of shape ", shape.str(), " into a tensor of shape ", dst.shape().str());
    EMBER_CHECK(dst.is_contiguous(), op, "destination of shape ", dst.shape().str(), " is not contiguous");
    evaluate_prepared(e, leaves, st, shape, dst.data());
}

// Where one distinct input's gradient goes: a buffer of the input's shape, viewed with
// strides in output index space (0 along broadcast axes, which the kernel sums over).
template <Real T>
struct GradTarget {
    T* base = nullptr;
    Strides strides{};
    bool full = false;  // same shape as the output: written once, no accumulation
    Index size = 0;     // elements of the buffer (the input's numel)
};

// For every distinct input d: grad_d = Σ over its leaf slots of g · ∂e/∂slot, reduced over
// broadcast axes, in one pass that recomputes the forward values in registers.
// `slot_to_input[k]` is the target of leaf slot k (or -1); targets[0, D) are the distinct
// inputs that need a gradient.
template <class E, Real T = typename E::value_type>
void backward_into(const E& e, Leaves<E>& leaves, const Tensor<T>& g_in,
                   const std::array<int, static_cast<std::size_t>(E::leaves)>& slot_to_input,
                   std::array<GradTarget<T>, static_cast<std::size_t>(E::leaves)>& targets, int D) {
    constexpr int L = E::leaves;
    constexpr Index W = static_cast<Index>(Batch<T>::size);
    using V = Batch<T>;
    std::array<Strides, L> st;
    const Shape shape = broadcast_leaves(leaves, st, "backward");
    const Index n = shape.numel();
    if (n == 0 || D == 0) return;
    if (n == 1) {  // scalars: one batch step, no loop planning
        BackwardContext<T, L> c;
        for (int k = 0; k < L; ++k) {
            c.row.splat[static_cast<std::size_t>(k)] = true;
            c.row.ptr[static_cast<std::size_t>(k)] = leaves[static_cast<std::size_t>(k)].value().data();
        }
        auto rec = e.template record<0>(c);
        e.template backprop<0>(c, rec, V(g_in.data()[0]));
        for (int d = 0; d < D; ++d) targets[static_cast<std::size_t>(d)].base[0] = T(0);
        for (int k = 0; k < L; ++k) {
            const int d = slot_to_input[static_cast<std::size_t>(k)];
            if (d >= 0) targets[static_cast<std::size_t>(d)].base[0] += c.adj[static_cast<std::size_t>(k)].get(0);
        }
        return;
    }
    Tensor<T> g = g_in;
    if (row_stride(shape, g.expand(shape).strides()) > 1) g = g.contiguous();
    Strides gst = g.expand(shape).strides();

    std::array<Strides*, 2 * L + 1> arrays;
    std::size_t na = 0;
    for (auto& s : st) arrays[na++] = &s;
    arrays[na++] = &gst;
    for (int d = 0; d < D; ++d) arrays[na++] = &targets[static_cast<std::size_t>(d)].strides;
    const LoopSpace sp = merge_axes(shape, std::span<Strides* const>(arrays.data(), na));
    const bool g_splat = last_stride(sp.shape, gst) == 0;

    // One run of `len` elements starting at element `begin` of row `r`; target d's buffer
    // is bases[d] (its own, or a thread's private copy when it accumulates).
    auto run = [&](Index r, Index begin, Index len, const std::array<T*, L>& bases) {
        BackwardContext<T, L> c;
        c.row = point_row<T, L>(sp, leaves, st, r, begin);
        const T* gp = g.data() + row_offset(sp.shape, gst, r) + (g_splat ? 0 : begin);
        std::array<T*, L> tp{};
        std::array<bool, L> tsplat{};
        for (int d = 0; d < D; ++d) {
            const auto& t = targets[static_cast<std::size_t>(d)];
            tsplat[static_cast<std::size_t>(d)] = last_stride(sp.shape, t.strides) == 0;
            tp[static_cast<std::size_t>(d)] = bases[static_cast<std::size_t>(d)] + row_offset(sp.shape, t.strides, r) +
                                              (tsplat[static_cast<std::size_t>(d)] ? 0 : begin);
        }
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
                // A full target is written once (a row of length 1 also looks constant
                // along the row, but must still be stored, not summed).
                const bool full = targets[static_cast<std::size_t>(d)].full;
                const bool splat = tsplat[static_cast<std::size_t>(d)];
                if (valid == W) {
                    if (full) a.store_unaligned(p + j);
                    else if (splat) *p += xsimd::hadd(a);
                    else (V::load_unaligned(p + j) + a).store_unaligned(p + j);
                    continue;
                }
                alignas(64) T tmp[W];
                a.store_aligned(tmp);
                if (full) {
                    std::memcpy(p + j, tmp, sizeof(T) * static_cast<std::size_t>(valid));
                } else if (splat) {
                    T s = 0;
                    for (Index i = 0; i < valid; ++i) s += tmp[i];
                    *p += s;
                } else {
                    for (Index i = 0; i < valid; ++i) p[j + i] += tmp[i];
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

    std::array<T*, L> own{};
    bool all_full = true;
    for (int d = 0; d < D; ++d) {
        own[static_cast<std::size_t>(d)] = targets[static_cast<std::size_t>(d)].base;
        all_full = all_full && targets[static_cast<std::size_t>(d)].full;
    }
    // Work item i of `parts`: a chunk of the flat run, or a block of rows.
    const Index rows_total = sp.flat() ? 1 : sp.rows();
    auto part = [&](Index i, Index parts, const std::array<T*, L>& bases) {
        if (sp.flat()) {
            const Index chunk = ((n + parts - 1) / parts + W - 1) / W * W;  // whole SIMD batches
            const Index b = std::min(n, i * chunk), end = std::min(n, b + chunk);
            if (b < end) run(0, b, end - b, bases);
            return;
        }
        for (Index r = rows_total * i / parts; r < rows_total * (i + 1) / parts; ++r) run(r, 0, sp.inner(), bases);
    };
    // Parts of at least 8K elements (or whole rows), a few per thread (private_sum_parts).
    const int parts = n < (1 << 15) ? 1 : private_sum_parts(sp.flat() ? n >> 13 : rows_total);
    if (parts <= 1) {
        part(0, 1, own);
        return;
    }
    if (all_full) {  // every output element's gradients are stored once: the parts share the targets
        parallel_tasks(parts, [&](int i) { part(i, parts, own); });
        return;
    }
    // Targets that accumulate (inputs broadcast along some axis: a bias, a scale) are summed
    // by each part into a zeroed private copy, and the copies into the target at the end,
    // in order; full targets are written in place, each element by one part.
    std::array<std::size_t, L> offset{};  // of each accumulating target in a thread's copy
    std::size_t copy_size = 0;
    for (int d = 0; d < D; ++d)
        if (!targets[static_cast<std::size_t>(d)].full) {
            offset[static_cast<std::size_t>(d)] = copy_size;
            copy_size += static_cast<std::size_t>(targets[static_cast<std::size_t>(d)].size);
        }
    std::vector<std::vector<T>> copies(static_cast<std::size_t>(parts), std::vector<T>(copy_size, T(0)));
    parallel_tasks(parts, [&](int i) {
        std::array<T*, L> bases = own;
        for (int d = 0; d < D; ++d)
            if (!targets[static_cast<std::size_t>(d)].full)
                bases[static_cast<std::size_t>(d)] = copies[static_cast<std::size_t>(i)].data() + offset[static_cast<std::size_t>(d)];
        part(i, parts, bases);
    });
    for (int d = 0; d < D; ++d) {
        const GradTarget<T>& t = targets[static_cast<std::size_t>(d)];
        if (t.full) continue;
        for (const auto& copy : copies)
            for (Index k = 0; k < t.size; ++k) t.base[k] += copy[offset[static_cast<std::size_t>(d)] + static_cast<std::size_t>(k)];
    }
}

}  // namespace ember::expr
