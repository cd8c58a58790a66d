#pragma once
/// \file
/// Convolution by im2col + GEMM, sample by sample or a few samples side by side: the
/// backend for everything the others do not take (ops/conv/backend.hpp).
///
///     forward: y = W · cols(x)          cols(x)[(c,ki,kj), (oy,ox)], one column per output pixel
///     adjoint: x = col2im(Wᵀ · y)       col2im adds each column back where im2col read it
///     weight:  dW = Σ_n y_n · cols(x_n)ᵀ
/// The GEMMs are gemm_panels.hpp's, one thread each: threads split the samples.
#include <algorithm>
#include <vector>

#include <Eigen/Core>

#include "ember/core/tensor.hpp"
#include "ember/core/threading.hpp"
#include "ember/ops/conv/epilogue.hpp"
#include "ember/ops/conv/geometry.hpp"
#include "ember/ops/gemm_panels.hpp"

namespace ember::detail {

// cols[(c,ki,kj), (oy,ox)] = x[c, oy*s - p + ki*d, ox*s - p + kj*d] (0 outside); rows of
// cols are `ld` apart, so several samples can sit side by side in one matrix. The valid
// column range is computed once per kernel offset, so the inner loop has no bounds tests.
template <Real T>
void im2col(const ConvGeometry& g, const T* x, T* cols, Index ld) {
    // With stride 1 and output rows as long as input rows ("same" padding), a kernel offset's
    // whole row of cols is x shifted by a constant: one block copy, then the columns that fell
    // outside the image are zeroed. This replaces Ho short copies per kernel offset.
    const bool shifted_copy = g.stride == 1 && g.Wo == g.W;
    for (Index c = 0; c < g.C; ++c)
        for (Index ki = 0; ki < g.kh; ++ki)
            for (Index kj = 0; kj < g.kw; ++kj) {
                T* row = cols + ((c * g.kh + ki) * g.kw + kj) * ld;
                const ValidRange cr = valid_range(g.W, g.Wo, g.stride, g.pad, kj * g.dil);
                const Index shift = kj * g.dil - g.pad;
                const T* plane = x + c * g.H * g.W;
                if (shifted_copy) {
                    const ValidRange rr = valid_range(g.H, g.Ho, 1, g.pad, ki * g.dil);
                    const Index row_shift = ki * g.dil - g.pad;
                    std::fill_n(row, rr.lo * g.Wo, T(0));
                    if (rr.lo < rr.hi && cr.lo < cr.hi) {
                        const Index first = rr.lo * g.Wo + cr.lo, last = (rr.hi - 1) * g.Wo + cr.hi;
                        std::copy(plane + first + row_shift * g.W + shift, plane + last + row_shift * g.W + shift, row + first);
                        for (Index oy = rr.lo; oy < rr.hi; ++oy) {
                            std::fill_n(row + oy * g.Wo, cr.lo, T(0));
                            std::fill(row + oy * g.Wo + cr.hi, row + (oy + 1) * g.Wo, T(0));
                        }
                    } else {
                        std::fill(row + rr.lo * g.Wo, row + rr.hi * g.Wo, T(0));
                    }
                    std::fill(row + rr.hi * g.Wo, row + g.Ho * g.Wo, T(0));
                    continue;
                }
                for (Index oy = 0; oy < g.Ho; ++oy) {
                    const Index iy = oy * g.stride - g.pad + ki * g.dil;
                    T* out = row + oy * g.Wo;
                    if (iy < 0 || iy >= g.H) {
                        std::fill_n(out, g.Wo, T(0));
                        continue;
                    }
                    const T* in = plane + iy * g.W + shift;
                    std::fill_n(out, cr.lo, T(0));
                    if (g.stride == 1) std::copy(in + cr.lo, in + cr.hi, out + cr.lo);
                    else
                        for (Index ox = cr.lo; ox < cr.hi; ++ox) out[ox] = in[ox * g.stride];
                    std::fill(out + cr.hi, out + g.Wo, T(0));
                }
            }
}

// x[c, iy, ix] += cols[(c,ki,kj), (oy,ox)]: the adjoint of im2col.
template <Real T>
void col2im(const ConvGeometry& g, const T* cols, T* x, Index ld) {
    for (Index c = 0; c < g.C; ++c)
        for (Index ki = 0; ki < g.kh; ++ki)
            for (Index kj = 0; kj < g.kw; ++kj) {
                const T* row = cols + ((c * g.kh + ki) * g.kw + kj) * ld;
                const ValidRange cr = valid_range(g.W, g.Wo, g.stride, g.pad, kj * g.dil);
                const Index shift = kj * g.dil - g.pad;
                for (Index oy = 0; oy < g.Ho; ++oy) {
                    const Index iy = oy * g.stride - g.pad + ki * g.dil;
                    if (iy < 0 || iy >= g.H) continue;
                    T* out = x + (c * g.H + iy) * g.W + shift;
                    const T* in = row + oy * g.Wo;
                    if (g.stride == 1)
                        for (Index ox = cr.lo; ox < cr.hi; ++ox) out[ox] += in[ox];
                    else
                        for (Index ox = cr.lo; ox < cr.hi; ++ox) out[ox * g.stride] += in[ox];
                }
            }
}

template <Real T>
using MatMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

// Work is split across threads by groups of samples. A group's im2col columns sit side by
// side in one [C·kh·kw, count·Ho·Wo] matrix, so each thread runs single-threaded GEMMs wide
// enough to be efficient (about 512 columns) with no synchronisation between threads.
inline Index conv_group(const ConvGeometry& g) {
    const Index threads = std::max<Index>(num_threads(), 1);
    const Index wide = std::max<Index>((512 + g.pixels() - 1) / g.pixels(), 1);
    return std::clamp<Index>(wide, 1, std::max<Index>(g.N / threads, 1));
}

template <Real T>
using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A per-thread scratch matrix that only ever grows. The layers of a network need matrices
// of different sizes; resizing one Eigen matrix to each would free and map fresh pages for
// every convolution (page faults were a tenth of a conv GAN's step).
template <Real T, int Slot>
MatMap<T> scratch_matrix(Index rows, Index cols) {
    thread_local std::vector<T, Eigen::aligned_allocator<T>> buffer;
    const auto size = static_cast<std::size_t>(rows * cols);
    if (buffer.size() < size) {
        buffer.clear();
        buffer.resize(size);
    }
    return MatMap<T>(buffer.data(), rows, cols);
}

// Runs body(n0, count, cols) for group i of samples; `cols` is a per-thread scratch matrix.
template <Real T, class Body>
void run_sample_group(const ConvGeometry& g, Index group, Index i, Body& body) {
    const Index n0 = i * group, count = std::min(group, g.N - n0);
    MatMap<T> cols = scratch_matrix<T, 0>(g.patch(), count * g.pixels());
    body(n0, count, cols);
}

// Runs body(n0, count, cols) for each group of samples, spread over the threads.
template <Real T, class Body>
void for_sample_groups(const ConvGeometry& g, Body&& body) {
    const Index group = conv_group(g), groups = (g.N + group - 1) / group;
    parallel_for(groups, [&](Index i) { run_sample_group<T>(g, group, i, body); });
}

// y[n0 + i, o, p] <-> Y[o, i·P + p] for the samples of one group.
template <Real T>
void to_group(const T* y, Index channels, Index P, Index n0, Index count, T* Y) {
    for (Index i = 0; i < count; ++i)
        for (Index o = 0; o < channels; ++o) std::copy_n(y + ((n0 + i) * channels + o) * P, P, Y + (o * count + i) * P);
}
// The reverse, each value of channel o stored through the epilogue.
template <Real T>
void from_group(const T* Y, Index channels, Index P, Index n0, Index count, T* y, const ConvEpilogue<T>& epilogue) {
    for (Index i = 0; i < count; ++i)
        for (Index o = 0; o < channels; ++o) epilogue.write_row(o, Y + (o * count + i) * P, P, y + ((n0 + i) * channels + o) * P);
}

// y = epilogue(W · cols(x)), x and w contiguous.
template <Real T>
Tensor<T> conv_forward_im2col(const ConvGeometry& g, const Tensor<T>& x, const Tensor<T>& w, const ConvEpilogue<T>& epilogue) {
    Tensor<T> y = Tensor<T>::empty(g.y_shape());
    const Index P = g.pixels();
    for_sample_groups<T>(g, [&](Index n0, Index count, MatMap<T>& cols) {
        for (Index i = 0; i < count; ++i) im2col(g, x.data() + (n0 + i) * g.C * g.H * g.W, cols.data() + i * P, count * P);
        if (count == 1) {
            T* yn = y.data() + n0 * g.O * P;
            gemm_row_major(w.data(), false, cols.data(), false, yn, g.O, P, g.patch(), false);
            if (!epilogue.identity())  // while the sample's output is still in cache
                for (Index o = 0; o < g.O; ++o) epilogue.write_row(o, yn + o * P, P, yn + o * P);
            return;
        }
        MatMap<T> Y = scratch_matrix<T, 1>(g.O, count * P);
        gemm_row_major(w.data(), false, cols.data(), false, Y.data(), g.O, count * P, g.patch(), false);
        from_group(Y.data(), g.O, P, n0, count, y.data(), epilogue);
    });
    return y;
}

// x = col2im(Wᵀ · y), y and w contiguous.
template <Real T>
Tensor<T> conv_adjoint_im2col(const ConvGeometry& g, const Tensor<T>& y, const Tensor<T>& w) {
    Tensor<T> x = Tensor<T>::zeros(g.x_shape());
    const Index P = g.pixels();
    for_sample_groups<T>(g, [&](Index n0, Index count, MatMap<T>& cols) {
        MatMap<T> Y = scratch_matrix<T, 1>(g.O, count * P);
        to_group(y.data(), g.O, P, n0, count, Y.data());
        gemm_row_major(w.data(), true, Y.data(), false, cols.data(), g.patch(), count * P, g.O, false);
        for (Index i = 0; i < count; ++i) col2im(g, cols.data() + i * P, x.data() + (n0 + i) * g.C * g.H * g.W, count * P);
    });
    return x;
}

// dW = Σ_n y_n cols(x_n)ᵀ: the groups of samples are cut into private_sum_parts ranges,
// each summed into its own matrix, and the matrices are added in order (the same result
// whichever thread runs which range). x and y contiguous.
template <Real T>
Tensor<T> conv_weight_im2col(const ConvGeometry& g, const Tensor<T>& x, const Tensor<T>& y) {
    const Index P = g.pixels(), group = conv_group(g), groups = (g.N + group - 1) / group;
    const int parts = private_sum_parts(groups);
    std::vector<Matrix<T>> part(static_cast<std::size_t>(parts));
    parallel_tasks(parts, [&](int k) {
        Matrix<T>& acc = part[static_cast<std::size_t>(k)];
        acc.setZero(g.O, g.patch());
        auto accumulate = [&](Index n0, Index count, MatMap<T>& cols) {
            for (Index i = 0; i < count; ++i) im2col(g, x.data() + (n0 + i) * g.C * g.H * g.W, cols.data() + i * P, count * P);
            MatMap<T> Y = scratch_matrix<T, 1>(g.O, count * P);
            to_group(y.data(), g.O, P, n0, count, Y.data());
            gemm_row_major(Y.data(), false, cols.data(), true, acc.data(), g.O, g.patch(), count * P, true);
        };
        for (Index i = groups * k / parts; i < groups * (k + 1) / parts; ++i) run_sample_group<T>(g, group, i, accumulate);
    });
    Tensor<T> w = Tensor<T>::empty(g.w_shape());
    MatMap<T> Wm(w.data(), g.O, g.patch());
    Wm = part[0];
    for (std::size_t i = 1; i < part.size(); ++i) Wm += part[i];
    return w;
}

}  // namespace ember::detail
