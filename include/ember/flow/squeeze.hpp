#pragma once
/// \file
/// Squeeze (space-to-depth, RealNVP), and Unsqueeze, the same map as a step in the other
/// direction. Squeeze turns each 2×2 block of pixels into 4 channels,
///
///     [N, C, H, W] -> [N, 4C, H/2, W/2],   y[n, 4c + 2i + j, h, w] = x[n, c, 2h + i, 2w + j]
/// (i, j ∈ {0, 1}: Glow's channel order). It only moves values, so its Jacobian is a
/// permutation matrix: log|det| = 0. After a squeeze, a channel mask splits each 2×2 block
/// between the two halves, which is what lets couplings at coarser scales mix neighbouring
/// pixels. Written as a gather (`take`, whose adjoint is a scatter-add) because ember's
/// tensors have at most 4 axes and the reshape-transpose formulation needs 6; the gather
/// makes squeeze and unsqueeze differentiable to any order.
#include <memory>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/flow/step.hpp"

namespace ember::flow {

namespace detail {
// Flat source indices of squeeze (to_depth) or unsqueeze for an input of shape [N,C,H,W]
// (squeeze) or [N,4C,H/2,W/2] (unsqueeze): out.flat(k) = in.flat(idx[k]).
inline IndexList squeeze_indices(Index N, Index C, Index H, Index W, bool to_depth) {
    auto idx = std::make_shared<std::vector<Index>>(static_cast<std::size_t>(N * C * H * W));
    const Index h2 = H / 2, w2 = W / 2;
    for (Index n = 0; n < N; ++n)
        for (Index c = 0; c < C; ++c)
            for (Index h = 0; h < H; ++h)
                for (Index w = 0; w < W; ++w) {
                    const Index i = h % 2, j = w % 2;
                    const Index pixel = ((n * C + c) * H + h) * W + w;  // in [N,C,H,W]
                    const Index block = ((n * 4 * C + 4 * c + 2 * i + j) * h2 + h / 2) * w2 + w / 2;  // in [N,4C,H/2,W/2]
                    if (to_depth) (*idx)[static_cast<std::size_t>(block)] = pixel;
                    else (*idx)[static_cast<std::size_t>(pixel)] = block;
                }
    return idx;
}
}  // namespace detail

/// [N, C, H, W] -> [N, 4C, H/2, W/2]; H and W must be even.
template <Real T>
Var<T> squeeze2d(const Var<T>& x) {
    const Shape& s = x.shape();
    EMBER_CHECK(s.rank() == 4 && s[2] % 2 == 0 && s[3] % 2 == 0, "squeeze2d",
                "expected input [N,C,H,W] with even H and W, got ", s.str());
    return take(x, detail::squeeze_indices(s[0], s[1], s[2], s[3], true), Shape{s[0], 4 * s[1], s[2] / 2, s[3] / 2});
}

/// The inverse: [N, 4C, H, W] -> [N, C, 2H, 2W].
template <Real T>
Var<T> unsqueeze2d(const Var<T>& y) {
    const Shape& s = y.shape();
    EMBER_CHECK(s.rank() == 4 && s[1] % 4 == 0, "unsqueeze2d", "expected input [N,4C,H,W], got ", s.str());
    return take(y, detail::squeeze_indices(s[0], s[1] / 4, 2 * s[2], 2 * s[3], false),
                Shape{s[0], s[1] / 4, 2 * s[2], 2 * s[3]});
}

/// Space-to-depth as a step: squeeze2d forward, unsqueeze2d inverse, log|det| = 0.
template <Real T>
class Squeeze : public FlowStep<T> {
public:
    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        return {squeeze2d(x), detail::zero_logdet<T>(x.dim(0))};
    }
    Var<T> inverse(const Var<T>& y) override { return unsqueeze2d(y); }
    Shape output_shape(const Shape& in) const override {
        EMBER_CHECK(in.rank() == 3 && in[1] % 2 == 0 && in[2] % 2 == 0, "Squeeze",
                    "expected a per-sample shape [C,H,W] with even H and W, got ", in.str());
        return Shape{4 * in[0], in[1] / 2, in[2] / 2};
    }
    std::string describe() const override { return "Squeeze()"; }
};

/// The inverse step, [N, 4C, H, W] -> [N, C, 2H, 2W]: ends a coarser scale inside a
/// FactorOut (factor_out.hpp), whose inner flow must give back the shape it was given.
template <Real T>
class Unsqueeze : public FlowStep<T> {
public:
    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        return {unsqueeze2d(x), detail::zero_logdet<T>(x.dim(0))};
    }
    Var<T> inverse(const Var<T>& y) override { return squeeze2d(y); }
    Shape output_shape(const Shape& in) const override {
        EMBER_CHECK(in.rank() == 3 && in[0] % 4 == 0, "Unsqueeze", "expected a per-sample shape [4C,H,W], got ", in.str());
        return Shape{in[0] / 4, 2 * in[1], 2 * in[2]};
    }
    std::string describe() const override { return "Unsqueeze()"; }
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_SQUEEZE_INSTANCES(X, T) \
    X template Var<T> squeeze2d<T>(const Var<T>&); \
    X template Var<T> unsqueeze2d<T>(const Var<T>&); \
    X template class Squeeze<T>; \
    X template class Unsqueeze<T>;
EMBER_EXTERN_INSTANCES(EMBER_SQUEEZE_INSTANCES)

}  // namespace ember::flow
