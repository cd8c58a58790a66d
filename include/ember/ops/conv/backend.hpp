#pragma once
/// \file
/// The one entry point per convolution primitive, and the choice of the kernel behind it.
///
///     conv_forward(g, x, w, epilogue)   y = epilogue(W · cols(x))
///     conv_adjoint(g, y, w)             x = col2im(Wᵀ · y)
///     conv_adjoint_through(g, gh, h, slope, w)
///                                       the same of gh times the leaky ReLU's derivative at h
///     conv_weight(g, x, y)              dW = Σ_n y_n · cols(x_n)ᵀ
///
/// Backends (one header each in this folder):
///   * im2col.hpp: im2col + GEMM, any geometry;
///   * direct.hpp: stride 1 with at most four output channels (a generator's last layer),
///     forward and weight gradient without im2col;
///   * samples_innermost.hpp: small images (at most 16x16 output pixels) with at least 8
///     samples per thread, computed with a group of samples innermost so that a pixel of a
///     channel is a run of samples (forward and input gradient).
/// The automatic choice is by geometry and thread count, from measurements on the shapes of
/// ember's models (each backend's header says which). A stride-1 adjoint with a square
/// kernel is computed as a forward convolution with the flipped kernel, whatever the choice.
///
/// ForceConvBackend runs every convolution of its scope on one backend, where that backend
/// has a kernel for the primitive and the geometry (else im2col's): the tests run each
/// convolution and gradient check on every backend this way.
#include "ember/expr/kernel.hpp"
#include "ember/ops/conv/direct.hpp"
#include "ember/ops/conv/epilogue.hpp"
#include "ember/ops/conv/geometry.hpp"
#include "ember/ops/conv/im2col.hpp"
#include "ember/ops/conv/samples_innermost.hpp"

namespace ember {

/// The kernels a convolution can run on (see ops/conv/backend.hpp).
enum class ConvBackend {
    automatic,          ///< chosen by geometry and thread count (the default)
    im2col,             ///< im2col + GEMM
    direct,             ///< without im2col: stride 1, at most 4 output channels
    samples_innermost,  ///< a group of samples innermost: forward and input gradient
};

namespace detail {
inline ConvBackend& forced_conv_backend() {
    thread_local ConvBackend backend = ConvBackend::automatic;
    return backend;
}
}  // namespace detail

/// Runs the convolutions of the calling thread on one backend until the end of the scope
/// (for tests and benchmarks; the previous choice comes back afterwards). A primitive the
/// backend has no kernel for, or a geometry it does not take, runs on im2col.
class ForceConvBackend {
public:
    /// Forces `backend` until the guard is destroyed.
    explicit ForceConvBackend(ConvBackend backend) : previous_(detail::forced_conv_backend()) {
        detail::forced_conv_backend() = backend;
    }
    ~ForceConvBackend() { detail::forced_conv_backend() = previous_; }
    ForceConvBackend(const ForceConvBackend&) = delete;
    ForceConvBackend& operator=(const ForceConvBackend&) = delete;

private:
    ConvBackend previous_;
};

namespace detail {

// The samples per group in the samples-innermost layout for this convolution, or 0 when it
// is computed another way (the forward asks the direct kernel first).
inline Index samples_innermost_group(const ConvGeometry& g) {
    switch (forced_conv_backend()) {
        case ConvBackend::automatic: return chwn_group(g);
        case ConvBackend::samples_innermost: return chwn_group(g, /*forced=*/true);
        default: return 0;
    }
}

inline bool use_direct(const ConvGeometry& g) {
    const ConvBackend b = forced_conv_backend();
    return (b == ConvBackend::automatic || b == ConvBackend::direct) && direct_conv_applies(g);
}

template <Real T>
Tensor<T> conv_forward(const ConvGeometry& g, const Tensor<T>& x, const Tensor<T>& wt, const ConvEpilogue<T>& epilogue) {
    const Tensor<T> w = wt.contiguous();
    if (use_direct(g)) return conv_forward_direct(g, x.contiguous(), w, epilogue);
    if (const Index group = samples_innermost_group(g)) return conv_forward_chwn(g, group, x, w, epilogue);
    return conv_forward_im2col(g, x.contiguous(), w, epilogue);
}

// For stride 1 and a square kernel, the adjoint is itself a convolution: x = conv(y, W̃) with
// W̃[c,o,i,j] = W[o,c,k-1-i,k-1-j] and padding d(k-1) - p. Its GEMM has the long inner
// dimension O·k² instead of O, and im2col's copies replace col2im's scattered additions
// into a zeroed x; with few output channels (a decoder's last conv has one) that is several
// times faster. Returns an undefined tensor when the geometry does not allow it.
template <Real T>
Tensor<T> conv_adjoint_as_conv(const ConvGeometry& g, const Tensor<T>& y, const Tensor<T>& w) {
    const Index k = g.kh, pad = g.dil * (k - 1) - g.pad;
    if (g.stride != 1 || g.kw != k || pad < 0) return {};
    const ConvGeometry flipped{g.N, g.O, g.Ho, g.Wo, g.C, k, k, 1, pad, g.dil, g.H, g.W};
    Tensor<T> wf = Tensor<T>::empty(flipped.w_shape());
    const T* src = w.data();
    T* dst = wf.data();
    for (Index o = 0; o < g.O; ++o)
        for (Index c = 0; c < g.C; ++c)
            for (Index i = 0; i < k; ++i)
                for (Index j = 0; j < k; ++j) dst[((c * g.O + o) * k + i) * k + j] = src[((o * g.C + c) * k + (k - 1 - i)) * k + (k - 1 - j)];
    return conv_forward(flipped, y, wf, ConvEpilogue<T>{});
}

template <Real T>
Tensor<T> conv_adjoint(const ConvGeometry& g, const Tensor<T>& y, const Tensor<T>& wt) {
    const Tensor<T> w = wt.contiguous();
    const ConvBackend forced = forced_conv_backend();
    if (forced == ConvBackend::automatic || forced == ConvBackend::direct)
        if (Tensor<T> x = conv_adjoint_as_conv(g, y, w); x.defined()) return x;
    if (const Index group = samples_innermost_group(g)) return conv_adjoint_chwn(g, group, y, w);
    return conv_adjoint_im2col(g, y.contiguous(), w);
}

// conv_adjoint(g, gh ⊙ leaky_relu'(h), w) for the output h of a convolution with a leaky ReLU
// epilogue of this slope (>= 0, so that h > 0 exactly where the activation's input was): in
// one pass when the samples form one group in the samples-innermost layout, which scales
// the gradient as it packs it.
template <Real T>
Tensor<T> conv_adjoint_through(const ConvGeometry& g, const Tensor<T>& gh, const Tensor<T>& h, T slope, const Tensor<T>& w) {
    const Index group = samples_innermost_group(g);
    if (group > 0 && group >= g.N && is_samples_innermost(h))
        return conv_adjoint_chwn(g, group, gh, w.contiguous(), h.data(), slope);
    const Tensor<T> gy = where(h > T(0), gh, gh * slope);  // LeakyReluOp's derivative
    return conv_adjoint(g, gy, w);
}

template <Real T>
Tensor<T> conv_weight(const ConvGeometry& g, const Tensor<T>& x, const Tensor<T>& y) {
    if (use_direct(g)) return conv_weight_direct(g, x.contiguous(), y.contiguous());
    return conv_weight_im2col(g, x.contiguous(), y.contiguous());
}

}  // namespace detail
}  // namespace ember
