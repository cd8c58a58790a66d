#pragma once
// The networks of examples/vae_mnist.cpp (Kingma & Welling 2014; docs/math.md §5):
// multilayer perceptrons with ReLU between the layers, PyTorch's default initialisation.
//
//   encoder  q(z|x):  x (784) -> H -> H -> (μ, logvar) (2·latent)
//   decoder  p(x|z):  z (latent) -> H -> H -> Bernoulli logits a (784)
//
// H = 400 and latent 50 by default (Burda et al. 2016's one-stochastic-layer VAE).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include <ember/ember.hpp>

namespace ember_examples {

struct VaeOptions {
    ember::Index latent = 50, hidden = 400;
};

struct Vae {
    ember::nn::Sequential<float> enc, dec;
    ember::Index latent;

    Vae(ember::Generator& init, const VaeOptions& v) : latent(v.latent) {
        namespace nn = ember::nn;
        enc.add<nn::Linear>(784, v.hidden, init);
        enc.add<nn::ReLU>();
        enc.add<nn::Linear>(v.hidden, v.hidden, init);
        enc.add<nn::ReLU>();
        enc.add<nn::Linear>(v.hidden, 2 * v.latent, init);  // μ and logvar side by side
        dec.add<nn::Linear>(v.latent, v.hidden, init);
        dec.add<nn::ReLU>();
        dec.add<nn::Linear>(v.hidden, v.hidden, init);
        dec.add<nn::ReLU>();
        dec.add<nn::Linear>(v.hidden, 784, init);  // Bernoulli logits
    }

    // q(z|x) of images x [B, 784]: μ and logvar, [B, latent] each.
    std::pair<ember::Var<float>, ember::Var<float>> encode(const ember::Var<float>& x) {
        const ember::Var<float> h = enc(x);
        return {ember::slice(h, 1, 0, latent), ember::slice(h, 1, latent, 2 * latent)};
    }
};

// The lr of a step: constant for the first half of the run, then decaying exponentially to
// lr_final at the last step; a function of the step, so that --resume continues it.
inline double vae_lr(std::int64_t step, std::int64_t total, double lr, double lr_final) {
    const std::int64_t half = total / 2;
    if (step <= half || total - half <= 1) return lr;
    return lr * std::pow(lr_final / lr, static_cast<double>(step - half) / static_cast<double>(total - 1 - half));
}

// Mean over the rows of `rows` [M, ...] of a per-row quantity (a tensor [b] for b rows)
// computed `batch` rows at a time, summed in double.
template <class F>
double batched_mean(const ember::Tensor<float>& rows, ember::Index batch, F&& per_row) {
    double total = 0;
    for (ember::Index i = 0; i < rows.dim(0); i += batch) {
        const ember::Tensor<float> v = per_row(rows.slice(0, i, std::min(i + batch, rows.dim(0))).contiguous());
        for (ember::Index j = 0; j < v.numel(); ++j) total += static_cast<double>(v.data()[j]);
    }
    return total / static_cast<double>(rows.dim(0));
}

}  // namespace ember_examples
