#pragma once
/// \file
/// Convolutions of small images with the samples innermost ("CHWN", cuda-convnet's layout).
///
/// After two stride-2 layers an MNIST image is a 7x7 map. Sample by sample, im2col then
/// copies runs of 7 values (single values, for a stride-2 kernel) and col2im adds them back
/// one at a time: in an SGLD step on a small conv energy the two took a third of the time,
/// as much as the GEMMs. With a group of samples innermost, xt[c, iy, ix, i], one pixel of
/// one channel is a run of `count` values whatever the stride or dilation, and the patch
/// matrix need not exist. The GEMM's rows are m = pixel·count + sample:
///
///     forward: y = W · cols(x): each row panel of cols(x)ᵀ (pack_row_panel's layout) is
///              copied straight from xt, a run per pixel and tap (implicit im2col);
///     adjoint: x = col2im(Wᵀ · y): each row panel of the product is computed into a small
///              block that stays in cache and is at once added into xt, a run per pixel and
///              tap (implicit col2im).
/// The price is a transpose into the layout and one out of it per call: linear passes
/// that cost far less than the short copies they replace.
///
#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

#include "ember/core/simd.hpp"

#include "ember/core/tensor.hpp"
#include "ember/core/threading.hpp"
#include "ember/core/transpose.hpp"
#include "ember/ops/conv/epilogue.hpp"
#include "ember/ops/conv/geometry.hpp"
#include "ember/ops/gemm_panels.hpp"

namespace ember::detail {

// The layout is used for images of at most kChwnMaxPixels output pixels (16x16 maps and
// smaller, where the sample-by-sample path copies rows of 16 values or fewer; it was not
// measured on larger ones) when every thread gets at least kChwnMinGroup samples: shorter
// runs are no better than such rows. A group holds at most kChwnMaxGroup samples, which
// bounds the buffers.
inline constexpr Index kChwnMaxPixels = 256, kChwnMinGroup = 8, kChwnMaxGroup = 64;

// The samples per group for this geometry, or 0 when the layout does not pay; `forced`
// (ForceConvBackend) takes any geometry.
inline Index chwn_group(const ConvGeometry& g, bool forced = false) {
    const Index threads = in_parallel_region() ? 1 : std::max(num_threads(), 1);
    const Index group = std::min(kChwnMaxGroup, (g.N + threads - 1) / threads);
    if (forced) return std::max<Index>(group, 1);
    return g.pixels() <= kChwnMaxPixels && group >= kChwnMinGroup ? group : 0;
}

// Runs body(n0, count) for groups of at most `group` consecutive samples, as equal as can be.
template <class Body>
void for_chwn_groups(const ConvGeometry& g, Index group, Body&& body) {
    const Index groups = (g.N + group - 1) / group;
    parallel_for(groups, [&](Index k) {
        const Index n0 = g.N * k / groups, n1 = g.N * (k + 1) / groups;
        body(n0, n1 - n0);
    });
}

// The buffer's storage, grown to at least `size` values (never shrunk: a thread's buffers
// serve every call).
template <Real T>
T* grown(PanelBuffer<T>& buffer, Index size) {
    if (buffer.size() < static_cast<std::size_t>(size)) buffer.resize(static_cast<std::size_t>(size));
    return buffer.data();
}

// Rows [m0, m0 + rows) of a row panel, m = pixel·count + sample, cut into runs of one
// output pixel's consecutive samples, and where each kernel tap (ki, kj) of each run's
// pixel starts in channel 0 of xt (-1 in the padding; channel c is c·H·W·count further on).
// A panel has at most GemmTile::rows runs; with count >= 8, at most 7.
struct PanelRuns {
    struct Run {
        Index row, length;
    };
    std::vector<Run> runs;
    std::vector<Index> start;  // [run][tap]
    Index taps = 0;

    void assign(const ConvGeometry& g, Index count, Index m0, Index rows) {
        taps = g.kh * g.kw;
        runs.clear();
        start.clear();
        for (Index r = 0; r < rows;) {
            const Index m = m0 + r, pixel = m / count, sample = m % count, length = std::min(count - sample, rows - r);
            const Index oy = pixel / g.Wo, ox = pixel % g.Wo;
            runs.push_back({r, length});
            for (Index ki = 0; ki < g.kh; ++ki)
                for (Index kj = 0; kj < g.kw; ++kj) {
                    const Index iy = oy * g.stride - g.pad + ki * g.dil, ix = ox * g.stride - g.pad + kj * g.dil;
                    const bool inside = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                    start.push_back(inside ? (iy * g.W + ix) * count + sample : -1);
                }
            r += length;
        }
    }
    // Calls f(run, at) for each run whose pixel's tap k = (c, tap) of im2col's patch order
    // lies inside the image (at: its start in xt), and f(run, -1) for the others.
    template <class F>
    void for_each_run(Index plane, Index c, Index tap, F&& f) const {
        for (std::size_t u = 0; u < runs.size(); ++u) {
            const Index s = start[u * static_cast<std::size_t>(taps) + static_cast<std::size_t>(tap)];
            f(runs[u], s < 0 ? Index{-1} : c * plane + s);
        }
    }
};

// Depth [k0, k0 + kc) of the panel's rows of cols(x)ᵀ, packed as pack_row_panel does.
template <Real T>
void pack_patch_panel(const PanelRuns& p, const T* xt, Index plane, Index rows, Index k0, Index kc, T* dst) {
    using Batch = xsimd::batch<T>;
    constexpr Index R = GemmTile<T>::rows, L = Batch::size;
    Index c = k0 / p.taps, tap = k0 % p.taps;
    for (Index k = 0; k < kc; ++k, dst += R) {
        p.for_each_run(plane, c, tap, [&](const PanelRuns::Run& run, Index at) {
            T* to = dst + run.row;
            if (at < 0) {
                std::fill_n(to, run.length, T(0));
                return;
            }
            const T* from = xt + at;
            Index t = 0;
            for (; t + L <= run.length; t += L) Batch::load_unaligned(from + t).store_unaligned(to + t);
            for (; t < run.length; ++t) to[t] = from[t];
        });
        std::fill(dst + rows, dst + R, T(0));
        if (++tap == p.taps) tap = 0, ++c;
    }
}

// The adjoint of pack_patch_panel over the whole depth: xt[tap of row r] += block[r, k],
// `block` holding the panel's rows of (Wᵀ · y)ᵀ column-major with GemmTile::rows rows.
template <Real T>
void add_patch_panel(const PanelRuns& p, const T* block, Index plane, Index depth, T* xt) {
    using Batch = xsimd::batch<T>;
    constexpr Index R = GemmTile<T>::rows, L = Batch::size;
    Index c = 0, tap = 0;
    for (Index k = 0; k < depth; ++k, block += R) {
        p.for_each_run(plane, c, tap, [&](const PanelRuns::Run& run, Index at) {
            if (at < 0) return;
            const T* from = block + run.row;
            T* to = xt + at;
            Index t = 0;
            for (; t + L <= run.length; t += L) (Batch::load_unaligned(to + t) + Batch::load_unaligned(from + t)).store_unaligned(to + t);
            for (; t < run.length; ++t) to[t] += from[t];
        });
        if (++tap == p.taps) tap = 0, ++c;
    }
}

// For a row panel of rows [m0, m0 + rows) whose SIMD vectors each lie in one pixel (count
// a multiple of the vector length): where the panel's vector r < 3 starts in the image
// `xt` at each depth k = (c, tap), in table[3·k + r]; `pad` (a vector of zeros to read, or a
// scratch vector to write) in the padding and past `rows`.
template <class Ptr>
void patch_vector_table(const ConvGeometry& g, Index count, Index lanes, Index m0, Index rows, Ptr xt, Ptr pad, Ptr* table) {
    const Index plane = g.H * g.W * count;
    for (Index r = 0; r < 3; ++r) {
        const Index m = m0 + r * lanes, pixel = m / count, sample = m % count;
        for (Index ki = 0; ki < g.kh; ++ki)
            for (Index kj = 0; kj < g.kw; ++kj) {
                const Index iy = (pixel / g.Wo) * g.stride - g.pad + ki * g.dil, ix = (pixel % g.Wo) * g.stride - g.pad + kj * g.dil;
                const bool inside = r * lanes < rows && iy >= 0 && iy < g.H && ix >= 0 && ix < g.W;
                const Ptr at = inside ? xt + (iy * g.W + ix) * count + sample : pad;
                for (Index c = 0; c < g.C; ++c) table[3 * ((c * g.kh + ki) * g.kw + kj) + r] = inside ? at + c * plane : pad;
            }
    }
}

// patch_vector_table for every row panel of a group's GEMM rows, panel p's at p·3·patch.
// Building them costs as much as a 1-channel layer's GEMM, so they are kept per thread: a
// sampler's next step meets the same layers. Its images are new tensors, which the
// allocator hands out from a few addresses in turn, so each (geometry, group size, pad)
// keeps tables for up to kTableImages images; for yet another image the least recently
// used of them is moved to it (a pass that adds the images' distance to every entry but
// the pad's; in a 200-step SGLD run on a small conv energy, 26 builds in 1600 calls and no
// moves at all). A table is a function of its key alone (geometry, group size and the two
// addresses), never of what the buffers hold: when the allocator hands an address to a new
// buffer, the table found for it is the one that buffer needs, so the cache cannot go stale.
inline constexpr std::size_t kTableImages = 4, kTableLayers = 2;
template <class Ptr>
const Ptr* patch_vector_tables(const ConvGeometry& g, Index count, Ptr xt, Ptr pad) {
    constexpr Index R = GemmTile<std::remove_cvref_t<decltype(*xt)>>::rows, L = R / 3;
    struct Tables {
        std::array<Index, 11> key{};
        Ptr xt = nullptr, pad = nullptr;
        std::uint64_t used = 0;  // when last returned
        std::vector<Ptr> table;
    };
    thread_local std::array<Tables, kTableImages * kTableLayers> cached;
    thread_local std::uint64_t now = 0;
    const std::array<Index, 11> key{g.C, g.H, g.W, g.Ho, g.Wo, g.kh, g.kw, g.stride, g.pad, g.dil, count};
    Tables *same_image = nullptr, *other_image = nullptr, *oldest = &cached[0];
    std::size_t images = 0;
    for (Tables& t : cached) {
        if (t.used < oldest->used) oldest = &t;
        if (t.table.empty() || t.key != key || t.pad != pad) continue;
        ++images;
        if (t.xt == xt) same_image = &t;
        else if (!other_image || t.used < other_image->used) other_image = &t;
    }
    Tables* t = same_image;
    if (!t && other_image && images >= kTableImages) {  // in integers: the old image may be gone
        t = other_image;
        const auto distance = reinterpret_cast<std::uintptr_t>(xt) - reinterpret_cast<std::uintptr_t>(t->xt);
        for (Ptr& at : t->table)
            if (at != pad) at = reinterpret_cast<Ptr>(reinterpret_cast<std::uintptr_t>(at) + distance);
        t->xt = xt;
    }
    if (!t) {
        t = oldest;
        const Index M = g.pixels() * count, depth = g.patch();
        t->key = key, t->xt = xt, t->pad = pad;
        t->table.resize(static_cast<std::size_t>((M + R - 1) / R * 3 * depth));
        for (Index m0 = 0; m0 < M; m0 += R) patch_vector_table(g, count, L, m0, std::min(R, M - m0), xt, pad, t->table.data() + m0 / R * 3 * depth);
    }
    t->used = ++now;
    return t->table.data();
}

// B (depth x cols, element (k, j) at b[k·ks + j·js]) as column panels for every depth chunk
// of kPanelDepth, one chunk after another: chunk k0 starts at round_up(cols, GemmTile::cols)·k0.
template <Real T>
void pack_all_column_panels(const T* b, Index ks, Index js, Index cols, Index depth, PanelBuffer<T>& out) {
    const Index width = round_up(cols, GemmTile<T>::cols);
    out.resize(static_cast<std::size_t>(width * depth));
    for (Index k0 = 0; k0 < depth; k0 += kPanelDepth)
        pack_column_panels(b, ks, js, cols, k0, std::min(kPanelDepth, depth - k0), out.data() + width * k0);
}

// Walks a group's GEMM rows m = pixel·count + sample one row panel at a time: for each panel
// its runs (PanelRuns), then chunk(runs, m0, rows, k0, kc) for each depth chunk of `depth`.
// The runs of every row panel are kept per thread for the last two geometries and group
// sizes they were built for: a layer's forward pass and input gradient, and a sampler's
// next step, ask for the same ones again.
template <Real T, class Chunk>
void for_row_panels(const ConvGeometry& g, Index count, Index depth, Chunk&& chunk) {
    constexpr Index R = GemmTile<T>::rows;
    const Index M = g.pixels() * count;
    struct Panels {
        std::array<Index, 10> key{};
        std::vector<PanelRuns> runs;
    };
    thread_local std::array<Panels, 2> cached;  // two layers' worth, replaced in turn
    thread_local std::size_t replace_next = 0;
    const std::array<Index, 10> key{g.H, g.W, g.Ho, g.Wo, g.kh, g.kw, g.stride, g.pad, g.dil, count};
    Panels* use = nullptr;
    for (Panels& p : cached)
        if (!p.runs.empty() && p.key == key) use = &p;
    if (!use) {
        use = &cached[replace_next];
        replace_next = 1 - replace_next;
        use->key = key;
        use->runs.resize(static_cast<std::size_t>((M + R - 1) / R));
        for (Index m0 = 0; m0 < M; m0 += R) use->runs[static_cast<std::size_t>(m0 / R)].assign(g, count, m0, std::min(R, M - m0));
    }
    for (Index m0 = 0; m0 < M; m0 += R) {
        const Index rows = std::min(R, M - m0);
        const PanelRuns& runs = use->runs[static_cast<std::size_t>(m0 / R)];
        for (Index k0 = 0; k0 < depth; k0 += kPanelDepth) chunk(runs, m0, rows, k0, std::min(kPanelDepth, depth - k0));
    }
}

// The layout's axis order {1, ..., rank-1, 0}: axis 0 (the samples) innermost, the others in
// order outside it.
inline std::array<int, kMaxRank> samples_innermost_order(int rank) {
    std::array<int, kMaxRank> order{};
    for (int d = 0; d < rank; ++d) order[static_cast<std::size_t>(d)] = (d + 1) % rank;
    return order;
}
template <Real T>
Tensor<T> empty_samples_innermost(const Shape& shape) {
    const auto order = samples_innermost_order(shape.rank());
    return Tensor<T>::empty_in_order(shape, std::span<const int>(order.data(), static_cast<std::size_t>(shape.rank())));
}
template <Real T>
bool is_samples_innermost(const Tensor<T>& t) {
    const auto order = samples_innermost_order(t.rank());
    return t.rank() >= 2 && t.dim(0) >= 2 && t.is_in_order(std::span<const int>(order.data(), static_cast<std::size_t>(t.rank())));
}

// A group's samples in the layout: `t` itself when it already is in it and holds just this
// group, else a transpose of samples [n0, n0 + count) of contiguous t into `buffer`.
template <Real T>
const T* group_in_layout(const Tensor<T>& t, Index n0, Index count, PanelBuffer<T>& buffer) {
    if (is_samples_innermost(t)) return t.data();
    const Index rows = t.numel() / t.dim(0);
    T* out = grown(buffer, rows * count);
    transpose_matrix(t.data() + n0 * rows, rows, count, rows, out, count);
    return out;
}

// A convolution whose samples form one group leaves its result in the layout: the next
// convolution then reads it as it is, and elementwise ops in between (an activation, its
// gradient) keep it (expr/kernel.hpp). Other consumers get it through contiguous(), whose
// transpose is the one this saved. With several groups the result is transposed back, and
// an input in the layout is first made contiguous.
template <Real T>
Tensor<T> new_in_layout(const Shape& shape, bool one_group) {
    return one_group ? empty_samples_innermost<T>(shape) : Tensor<T>::empty(shape);
}
template <Real T>
Tensor<T> input_for(const Tensor<T>& t, bool one_group) {
    return one_group && is_samples_innermost(t) ? t : t.contiguous();
}

// y [N, O, Ho, Wo] = epilogue(W · cols(x)), w [O, C, kh, kw] contiguous. With one group the
// epilogue is applied to each row panel's product while it is in registers; with several,
// the bias is added as each group is transposed out and the activation right after.
template <Real T>
Tensor<T> conv_forward_chwn(const ConvGeometry& g, Index group, const Tensor<T>& x_any, const Tensor<T>& w,
                            const ConvEpilogue<T>& epilogue) {
    constexpr Index R = GemmTile<T>::rows;
    const Index K = g.patch(), P = g.pixels(), out_rows = g.O * P;
    const Index width = round_up(g.O, GemmTile<T>::cols);
    PanelBuffer<T> wt;  // Wᵀ (K x O): element (k, o) at w[o·K + k]
    pack_all_column_panels(w.data(), Index{1}, K, g.O, K, wt);
    const bool one_group = group >= g.N;
    std::vector<T> bias_rows;  // bias[o] for each output value (o, p) of a sample
    if (epilogue.bias && !one_group)
        for (Index o = 0; o < g.O; ++o) bias_rows.insert(bias_rows.end(), static_cast<std::size_t>(P), epilogue.bias[o]);
    const Tensor<T> x = input_for(x_any, one_group);
    Tensor<T> y = new_in_layout<T>(g.y_shape(), one_group);
    for_chwn_groups(g, group, [&](Index n0, Index count) {
        thread_local PanelBuffer<T> xt_buffer, yt_buffer, panel_buffer;
        const Index M = P * count;
        const T* xt = group_in_layout(x, n0, count, xt_buffer);
        T* yt = one_group ? y.data() : grown(yt_buffer, out_rows * count);  // [O, M]: column-major M x O
        T* panel = grown(panel_buffer, R * std::min(kPanelDepth, K));
        // With a whole number of SIMD vectors per pixel, every vector of a row panel lies in
        // one pixel: the kernel reads it in place, through a table of where each vector of
        // the panel starts at each depth (no patch panel is packed). Else the panel is packed.
        const bool in_place = count % GemmTile<T>::lanes == 0;
        alignas(64) static const T zeros[GemmTile<T>::lanes] = {};
        const T* const* vectors = in_place ? patch_vector_tables(g, count, xt, static_cast<const T*>(zeros)) : nullptr;
        // One group's epilogue is applied to the last depth chunk's product in registers.
        const ConvEpilogue<T> none, finish = one_group ? epilogue : none;
        for_row_panels<T>(g, count, K, [&](const PanelRuns& runs, Index m0, Index rows, Index k0, Index kc) {
            const auto store = column_major_store(yt + m0, M, rows, k0 > 0, k0 + kc == K ? finish : none);
            if (in_place) {
                const T* const* v = vectors + 3 * (m0 / R * K + k0);
                gemm_row_panel<T>([v](Index k, Index r) { return xsimd::batch<T>::load_unaligned(v[3 * k + r]); },
                                  wt.data() + width * k0, g.O, kc, store);
                return;
            }
            pack_patch_panel(runs, xt, g.H * g.W * count, rows, k0, kc, panel);
            gemm_row_panel<T>(packed_panel_loader(static_cast<const T*>(panel)), wt.data() + width * k0, g.O, kc, store);
        });
        if (!one_group) {
            transpose_matrix(yt, count, out_rows, count, y.data() + n0 * out_rows, out_rows,
                             epilogue.bias ? bias_rows.data() : nullptr);
            epilogue.activate(y.data() + n0 * out_rows, count * out_rows);
        }
    });
    return y;
}

// pack_row_panel of rows [0, rows) x depth [k0, k0 + kc) of y, column-major with M rows,
// each value times leaky_relu's derivative at h (the same rows of h, when not null): the
// incoming gradient where h > 0, times the slope elsewhere, as LeakyReluOp's df. One pass
// for both while the panel is in cache.
template <Real T>
void pack_gradient_panel(const T* y, const T* h, T slope, Index rows, Index k0, Index kc, Index M, T* panel) {
    using Batch = xsimd::batch<T>;
    constexpr Index R = GemmTile<T>::rows, L = Batch::size;
    auto load = [](const T* from, Index n) {  // n <= L values, zeros after them
        if (n == L) return Batch::load_unaligned(from);
        alignas(64) T tile[Batch::size] = {};
        std::copy_n(from, std::max(n, Index{0}), tile);
        return Batch::load_aligned(tile);
    };
    for (Index k = 0; k < kc; ++k) {
        const T* yk = y + (k0 + k) * M;
        const T* hk = h ? h + (k0 + k) * M : nullptr;
        for (Index i = 0; i < R; i += L) {
            const Index n = std::min(L, rows - i);
            Batch v = load(yk + i, n);
            if (hk) v = xsimd::select(load(hk + i, n) > Batch(T(0)), v, v * Batch(slope));
            v.store_aligned(panel + k * R + i);
        }
    }
}

// x [N, C, H, W] = col2im(Wᵀ · y), w [O, C, kh, kw] contiguous. With `leaky_out`, the output
// h of a convolution with a leaky ReLU epilogue (one group, in the layout), y is first
// multiplied by the activation's derivative, 1 where h > 0 and the slope elsewhere, as it is
// packed.
template <Real T>
Tensor<T> conv_adjoint_chwn(const ConvGeometry& g, Index group, const Tensor<T>& y_any, const Tensor<T>& w,
                            const T* leaky_out = nullptr, T slope = T(0)) {
    constexpr Index R = GemmTile<T>::rows;
    const Index K = g.O, patch = g.patch(), P = g.pixels(), in_rows = g.C * g.H * g.W;
    const Index width = round_up(patch, GemmTile<T>::cols);
    PanelBuffer<T> wp;  // W (O x patch): element (o, k) at w[o·patch + k]
    pack_all_column_panels(w.data(), patch, Index{1}, patch, K, wp);
    const bool one_group = group >= g.N;
    EMBER_CHECK(one_group || !leaky_out, "conv2d", "internal error: the fused activation's gradient needs one group");
    const Tensor<T> y = input_for(y_any, one_group);
    Tensor<T> x = new_in_layout<T>(g.x_shape(), one_group);
    for_chwn_groups(g, group, [&](Index n0, Index count) {
        thread_local PanelBuffer<T> yt_buffer, xt_buffer, panel_buffer, block_buffer;
        const Index M = P * count;
        const T* yt = group_in_layout(y, n0, count, yt_buffer);  // [O, M]
        T* xt = one_group ? x.data() : grown(xt_buffer, in_rows * count);
        T* panel = grown(panel_buffer, R * std::min(kPanelDepth, K));
        T* block = grown(block_buffer, R * patch);  // one row panel of (Wᵀ · y)ᵀ, column-major
        std::fill_n(xt, in_rows * count, T(0));
        // With a whole number of SIMD vectors per pixel and one depth chunk, the kernel adds
        // each vector of the product straight into xt (patch_vector_table's places; the
        // padding's go to a scratch vector), in the order add_patch_panel would.
        const bool in_place = count % GemmTile<T>::lanes == 0 && K <= kPanelDepth;
        alignas(64) thread_local T sink[GemmTile<T>::lanes];  // where the padding's sums go
        T* const* vectors = in_place ? patch_vector_tables(g, count, xt, static_cast<T*>(sink)) : nullptr;
        for_row_panels<T>(g, count, K, [&](const PanelRuns& runs, Index m0, Index rows, Index k0, Index kc) {
            pack_gradient_panel(yt + m0, leaky_out ? leaky_out + m0 : nullptr, slope, rows, k0, kc, M, panel);
            if (!in_place) {
                gemm_panels(panel, wp.data() + width * k0, rows, patch, kc, block, R, k0 > 0);
                if (k0 + kc == K) add_patch_panel(runs, block, g.H * g.W * count, patch, xt);
                return;
            }
            T* const* v = vectors + 3 * (m0 / R * patch);
            gemm_row_panel<T>(packed_panel_loader(static_cast<const T*>(panel)), wp.data(), patch, kc,
                              [v](Index j, Index r, xsimd::batch<T> value) {
                                  (xsimd::batch<T>::load_unaligned(v[3 * j + r]) + value).store_unaligned(v[3 * j + r]);
                              });
        });
        if (!one_group) transpose_matrix(xt, count, in_rows, count, x.data() + n0 * in_rows, in_rows);
    });
    return x;
}

}  // namespace ember::detail
