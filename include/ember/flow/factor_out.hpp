#pragma once
/// \file
/// FactorOut: the multi-scale step of RealNVP (Dinh et al.\ 2017, §3.6) and Glow's "split".
/// After a scale, half of the channels are declared final latents and every later step
/// transforms only the other half:
///
///     y = concat(inner(x[:, :k]), x[:, k:])   along channels (axis 1)
///     log|det ∂y/∂x| = log|det ∂inner|        (the factored-out block is the identity)
///     x = concat(inner⁻¹(y[:, :k]), y[:, k:])
/// The Jacobian is block-diagonal, [[∂inner, 0], [0, I]]. The factored-out channels reach the
/// base density N(0, I) as they are, so the cost of the later scales halves with each split,
/// and the latents of the coarse scales are a fraction of z.
///
/// `inner` is any step that keeps its per-sample shape [k, H, W]; a flow that squeezes to a
/// coarser scale ends with Unsqueeze (squeeze.hpp) to come back:
///
///     auto coarse = std::make_shared<flow::Flow<float>>(Shape{2, 14, 14});
///     coarse->add<flow::Squeeze>();                                   // [8, 7, 7]
///     ... steps at 7×7 ...
///     coarse->add<flow::Unsqueeze>();                                 // [2, 14, 14]
///     f.add<flow::FactorOut>(2, coarse);                              // f is at [4, 14, 14]
/// In Glow the factored-out half has a Gaussian prior whose mean and scale are predicted from
/// the kept half; an affine coupling that transforms channels k.. conditioned on :k, placed
/// just before the FactorOut, is exactly that prior (channel_mask with flip = false).
#include <memory>
#include <utility>

#include "ember/core/instances.hpp"
#include "ember/flow/step.hpp"

namespace ember::flow {

/// The multi-scale split: `inner` transforms the first k channels, the others pass through
/// as final latents (see the file description).
template <Real T>
class FactorOut : public FlowStep<T> {
public:
    /// Keeps the first `kept_channels` channels for `inner`; the rest are final latents.
    FactorOut(Index kept_channels, std::shared_ptr<FlowStep<T>> inner) : kept_(kept_channels) {
        EMBER_CHECK(kept_channels > 0, "FactorOut", "kept channels must be positive, got ", kept_channels);
        EMBER_CHECK(inner != nullptr, "FactorOut", "inner step is null");
        inner_ = this->register_module("inner", std::move(inner));
    }

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        check_input("FactorOut", x.shape());
        FlowOutput<T> kept = inner_->forward_and_logdet(slice(x, 1, 0, kept_));
        check_inner_output("FactorOut", x.shape(), kept.y.shape());
        return {concat<T>({kept.y, slice(x, 1, kept_, x.dim(1))}, 1), kept.logdet};
    }

    Var<T> inverse(const Var<T>& y) override {
        check_input("FactorOut::inverse", y.shape());
        const Var<T> kept = inner_->inverse(slice(y, 1, 0, kept_));
        check_inner_output("FactorOut::inverse", y.shape(), kept.shape());
        return concat<T>({kept, slice(y, 1, kept_, y.dim(1))}, 1);
    }

    Shape output_shape(const Shape& in) const override {
        EMBER_CHECK(in.rank() >= 1 && in[0] > kept_, "FactorOut", "expected a per-sample shape with more than ", kept_,
                    " channels, got ", in.str());
        Shape kept = in;
        kept[0] = kept_;
        const Shape mapped = inner_->output_shape(kept);
        EMBER_CHECK(mapped == kept, "FactorOut", "the inner step maps ", kept.str(), " to ", mapped.str(),
                    "; it must keep the shape (end a squeezed scale with Unsqueeze)");
        return in;
    }

    /// The step applied to the kept channels.
    FlowStep<T>& inner() const { return *inner_; }
    /// k, the number of channels the inner step transforms.
    Index kept_channels() const { return kept_; }

    std::string describe() const override { return "FactorOut(" + std::to_string(kept_) + ", " + inner_->describe() + ")"; }

private:
    void check_input(const char* op, const Shape& s) const {
        EMBER_CHECK(s.rank() >= 2 && s[1] > kept_, op, "expected input [N,C,...] with C > ", kept_, " (the kept channels), got ",
                    s.str());
    }
    void check_inner_output(const char* op, const Shape& x, const Shape& got) const {
        Shape want = x;
        want[1] = kept_;
        EMBER_CHECK(got == want, op, "the inner step returned ", got.str(), " for input ", want.str(),
                    "; it must keep the shape (end a squeezed scale with Unsqueeze)");
    }

    Index kept_;
    std::shared_ptr<FlowStep<T>> inner_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_FACTOR_OUT_INSTANCES(X, T) \
    X template class FactorOut<T>;
EMBER_EXTERN_INSTANCES(EMBER_FACTOR_OUT_INSTANCES)

}  // namespace ember::flow
