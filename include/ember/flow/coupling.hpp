#pragma once
/// \file
/// Coupling layers: half of the coordinates (mask m = 1) pass unchanged and parametrise an
/// elementwise invertible map of the other half (m = 0), so the Jacobian is triangular
/// and its determinant is a product of diagonal terms, whatever the network `net` is.
///
/// AffineCoupling (RealNVP, Dinh et al. 2017; docs/math.md §6). With h = net(m ⊙ x), whose
/// channels (axis 1) are 2C: the first C raw log-scales h_s, the last C raw shifts h_t,
///
///     s = (1 - m) ⊙ scale · tanh(h_s)     log-scale, |s| ≤ |scale| (a learned [C] vector)
///     t = (1 - m) ⊙ h_t                   shift
///     y = x ⊙ exp(s) + t                  (= x where m = 1, since s = t = 0 there)
///     log|det ∂y/∂x| = Σ s
/// Ordering the m = 1 coordinates first, ∂y/∂x = [[I, 0], [∂y_b/∂x_a, diag(exp(s_b))]]:
/// lower block-triangular, so its determinant is Π exp(s_b). Bounding the log-scale with
/// tanh keeps exp(s) from overflowing when the network outputs a large value early in
/// training (RealNVP's reference code does the same); the learned scale, initialised to 1,
/// still lets a trained layer use a wider range.
/// Inverse: m ⊙ y = m ⊙ x, so s and t are recomputed from y and x = (y - t) ⊙ exp(-s).
///
/// AdditiveCoupling (NICE, Dinh et al. 2015): net outputs C channels t̂, and
///
///     y = x + (1 - m) ⊙ t̂(m ⊙ x),   log|det| = 0 (unit diagonal),   x = y - (1 - m) ⊙ t̂(m ⊙ y).
///
/// Masks ([D] for vectors x [N, D], [C,H,W] for images x [N,C,H,W]) are in masks.hpp; the
/// network is any module mapping [N, ...] to [N, 2C, ...] (affine) or [N, C, ...]
/// (additive), e.g. those of conditioner.hpp. The mask is a buffer ("mask"), so a checkpoint
/// records which half each layer conditions on.
#include <memory>
#include <utility>

#include "ember/core/instances.hpp"
#include "ember/flow/masks.hpp"
#include "ember/flow/step.hpp"

namespace ember::flow {

namespace detail {
// The network's output must be [N, channels, rest of x's shape...].
inline void check_net_output(const char* op, const Shape& x, const Shape& h, Index channels) {
    bool ok = h.rank() == x.rank() && h[0] == x[0] && h[1] == channels;
    for (int d = 2; ok && d < x.rank(); ++d) ok = h[d] == x[d];
    Shape want = x;
    want[1] = channels;
    EMBER_CHECK(ok, op, "the coupling network maps input ", x.str(), " to ", h.str(), "; expected ", want.str());
}

// [C] -> [C], or [C,1,1] to broadcast over images.
inline Shape channel_broadcast_shape(const Shape& mask) {
    return mask.rank() == 1 ? Shape{mask[0]} : Shape{mask[0], 1, 1};
}
}  // namespace detail

/// RealNVP's affine coupling: y = x ⊙ exp(s) + t on the coordinates where the mask is 0,
/// with s and t computed by `net` from the others (see the file description).
template <Real T>
class AffineCoupling : public FlowStep<T> {
public:
    /// A coupling that conditions on the coordinates where `mask` is 1; `net` maps [N, C, ...]
    /// to [N, 2C, ...] (raw log-scales, then shifts).
    AffineCoupling(Tensor<T> mask, std::shared_ptr<nn::Module<T>> net) {
        detail::check_mask(mask, "AffineCoupling");
        channels_ = mask.dim(0);
        mask_ = this->register_buffer("mask", mask.clone());
        net_ = this->register_module("net", std::move(net));
        scale_ = this->register_parameter("scale", Tensor<T>::ones(Shape{channels_}));
    }

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        detail::check_event_shape("AffineCoupling", x.shape(), mask_.shape());
        const auto [s, t] = log_scale_and_shift(x);
        return {Var<T>(x * exp(s) + t), detail::sum_per_sample(s)};
    }

    Var<T> inverse(const Var<T>& y) override {
        detail::check_event_shape("AffineCoupling::inverse", y.shape(), mask_.shape());
        const auto [s, t] = log_scale_and_shift(y);
        return Var<T>((y - t) * exp(-s));
    }

    /// The mask: 1 where coordinates pass unchanged and condition the rest.
    const Tensor<T>& mask() const { return mask_; }
    /// The network that computes the log-scales and shifts.
    nn::Module<T>& net() const { return *net_; }
    /// The learned bound on the log-scale, [C] (initially 1).
    const Var<T>& scale() const { return scale_; }

    std::string describe() const override { return "AffineCoupling(mask " + mask_.shape().str() + ")"; }

private:
    // s and t of the header comment, from the conditioning part m ⊙ v (v = x or y: equal there).
    std::pair<Var<T>, Var<T>> log_scale_and_shift(const Var<T>& v) {
        const Var<T> h = net_->forward(Var<T>(v * mask_));
        detail::check_net_output("AffineCoupling", v.shape(), h.shape(), 2 * channels_);
        const Var<T> raw_s = slice(h, 1, 0, channels_), raw_t = slice(h, 1, channels_, 2 * channels_);
        const Var<T> scale = reshape(scale_, detail::channel_broadcast_shape(mask_.shape()));
        Var<T> s((T(1) - mask_) * scale * tanh(raw_s));
        Var<T> t((T(1) - mask_) * raw_t);
        return {std::move(s), std::move(t)};
    }

    Index channels_ = 0;
    Tensor<T> mask_;
    std::shared_ptr<nn::Module<T>> net_;
    Var<T> scale_;
};

/// NICE's additive coupling: y = x + (1 - m) ⊙ t̂(m ⊙ x), volume-preserving (log|det| = 0).
template <Real T>
class AdditiveCoupling : public FlowStep<T> {
public:
    /// A coupling that conditions on the coordinates where `mask` is 1; `net` maps [N, C, ...]
    /// to the shifts [N, C, ...].
    AdditiveCoupling(Tensor<T> mask, std::shared_ptr<nn::Module<T>> net) {
        detail::check_mask(mask, "AdditiveCoupling");
        channels_ = mask.dim(0);
        mask_ = this->register_buffer("mask", mask.clone());
        net_ = this->register_module("net", std::move(net));
    }

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        detail::check_event_shape("AdditiveCoupling", x.shape(), mask_.shape());
        return {Var<T>(x + shift(x)), detail::zero_logdet<T>(x.dim(0))};
    }

    Var<T> inverse(const Var<T>& y) override {
        detail::check_event_shape("AdditiveCoupling::inverse", y.shape(), mask_.shape());
        return Var<T>(y - shift(y));
    }

    /// The mask: 1 where coordinates pass unchanged and condition the rest.
    const Tensor<T>& mask() const { return mask_; }
    /// The network that computes the shifts.
    nn::Module<T>& net() const { return *net_; }

    std::string describe() const override { return "AdditiveCoupling(mask " + mask_.shape().str() + ")"; }

private:
    // (1 - m) ⊙ t̂(m ⊙ v)
    Var<T> shift(const Var<T>& v) {
        const Var<T> h = net_->forward(Var<T>(v * mask_));
        detail::check_net_output("AdditiveCoupling", v.shape(), h.shape(), channels_);
        return Var<T>((T(1) - mask_) * h);
    }

    Index channels_ = 0;
    Tensor<T> mask_;
    std::shared_ptr<nn::Module<T>> net_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_COUPLING_INSTANCES(X, T) \
    X template class AffineCoupling<T>; \
    X template class AdditiveCoupling<T>;
EMBER_EXTERN_INSTANCES(EMBER_COUPLING_INSTANCES)

}  // namespace ember::flow
