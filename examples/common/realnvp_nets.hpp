#pragma once
// The flow of examples/realnvp_mnist.cpp (RealNVP, Dinh et al. 2017; Glow, Kingma & Dhariwal
// 2018; docs/math.md §6, docs/flows.md), every step from include/ember/flow/:
//
//   LogitTransform(α)                                      [1,28,28]  (its log-det counts in bits/dim)
//   F × (ActNorm, affine coupling)                         checkerboard masks alternating, width H/2
//   Squeeze                                                -> [4,14,14]
//   K × (ActNorm, InvertibleConv1x1, affine coupling)      channel masks alternating, width H
//   Squeeze                                                -> [16,7,7]
//   K × (ActNorm, InvertibleConv1x1, affine coupling)      width 2H
//
// Defaults F = 4, K = 8, H = 64 (20 couplings, 0.68M parameters). The conditioners are
// Conv 3x3, SiLU, Conv 1x1, SiLU, Conv 3x3 (flow::conv_conditioner). In short trials the
// number of couplings mattered more than their width: after one epoch K = 8 beat K = 4 with
// twice the width (1.720 vs 1.817 bits/dim), and F = 4 at 28×28 gained as much as K = 12
// instead of 8 for less time (docs/flows.md). The scales keep all channels: the example does
// not use flow::FactorOut, which RealNVP and Glow use to halve the later scales' work.
#include <algorithm>

#include <ember/ember.hpp>

namespace ember_examples {

struct RealNvpOptions {
    int full_res_steps = 4;  // F: checkerboard couplings at 28×28, before the first squeeze
    int steps = 8;           // K: flow steps per scale (14×14 and 7×7)
    ember::Index hidden = 64;  // H: conditioner width at scale 1 (scale 2: twice this)
    double alpha = 0.05;     // the logit transform's α
};

inline ember::flow::Flow<float> make_realnvp(const RealNvpOptions& o, ember::Generator& gen) {
    namespace flow = ember::flow;
    flow::Flow<float> f(ember::Shape{1, 28, 28});
    f.add<flow::LogitTransform>(o.alpha);
    for (int k = 0; k < o.full_res_steps; ++k) {  // [1,28,28]: checkerboard couplings
        f.add<flow::ActNorm>(1);
        f.add(flow::affine_coupling_conv<float>(flow::checkerboard_mask<float>(1, 28, 28, k % 2 == 1), o.hidden / 2, gen));
    }
    f.add<flow::Squeeze>();  // [4,14,14]
    for (int k = 0; k < o.steps; ++k) {
        f.add<flow::ActNorm>(4);
        f.add<flow::InvertibleConv1x1>(4, gen);
        f.add(flow::affine_coupling_conv<float>(flow::channel_mask<float>(4, 14, 14, k % 2 == 1), o.hidden, gen));
    }
    f.add<flow::Squeeze>();  // [16,7,7]
    for (int k = 0; k < o.steps; ++k) {
        f.add<flow::ActNorm>(16);
        f.add<flow::InvertibleConv1x1>(16, gen);
        f.add(flow::affine_coupling_conv<float>(flow::channel_mask<float>(16, 7, 7, k % 2 == 1), 2 * o.hidden, gen));
    }
    return f;
}

}  // namespace ember_examples
