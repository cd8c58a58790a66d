#pragma once
/// \file
/// Gradient penalties (docs/math.md §1): regularisers on the gradient of an energy or critic with
/// respect to its INPUT, ∇_x f(x), which are then minimised with respect to the network's
/// parameters. Their gradient in the parameters is a mixed second derivative, so ∇_x f is
/// taken with grad(..., {.create_graph = true}): the penalty is an ordinary Var on the
/// graph and backward() differentiates through the gradient.
///
/// Each takes ANY callable `f: Var<T> [B,...] -> Var<T> [B] or [B,1]` (an nn::Module, a
/// lambda over raw Vars). The gradient of sample i is read off ∇_x Σ_j f(x_j), which is
/// the per-sample gradient only when samples do not interact inside f: no BatchNorm in
/// training mode (batch statistics couple the samples) in the critic of a penalty.
///
/// The inputs are detached (real data, generator samples): a penalty regularises the critic
/// and sends gradients to its parameters only, as in the WGAN-GP and R1 reference code.
///
/// The norm at zero. (||g|| - 1)² has a cone-shaped kink at g = 0, where it is not
/// differentiable at all; smoothing it as sqrt(Σg² + δ) would bias the value by up to √δ
/// and still have a second derivative of size 1/√δ there. We use the exact norm (norm2),
/// whose derivative g/||g|| is taken as 0 at g = 0: a valid subgradient (the kink is
/// concave, -2||g|| + O(||g||²), so 0 lies in its Clarke subdifferential), the true
/// derivative everywhere else, and second derivatives exact wherever ||g|| > 0. The R1
/// penalty needs no norm (||g||² = Σ g² is smooth), and the one-sided penalty is flat
/// around 0 (max(0, ||g|| - 1) = 0 there), so both are differentiable everywhere.
#include <vector>

#include "ember/autodiff/engine.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/energy/contrastive.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember::energy {

/// Per-sample squared gradient norms ||∇_x u_i||² ([B]) of per-sample outputs u = f(x)
/// ([B] or [B,1]) with respect to x ([B,...], requires grad), recorded so that they are
/// differentiable in whatever else u depends on (the parameters). The building block of
/// the penalties below, for callers who already computed f(x) on a leaf x that requires
/// grad and want to reuse that forward pass.
///
///     Var<float> x = Var<float>(data, true);  Var<float> u = D(x);
///     Var<float> r1 = Var<float>(mean(energy::grad_sq_norm_per_sample(u, x)) * 10.f);
template <Real T>
Var<T> grad_sq_norm_per_sample(const Var<T>& u, const Var<T>& x) {
    detail::check_batch(x, "grad_sq_norm_per_sample", "x");
    EMBER_CHECK(x.requires_grad(), "grad_sq_norm_per_sample", "x must require grad (a leaf made with Var(t, true))");
    EMBER_CHECK(grad_enabled(), "grad_sq_norm_per_sample", "called with grad mode off (inside NoGrad): the gradient "
                "could not be recorded, so the result would be silently zero");
    const Var<T> up = detail::per_sample(u, "grad_sq_norm_per_sample", "u");
    EMBER_CHECK(up.dim(0) == x.dim(0), "grad_sq_norm_per_sample", "u has ", up.dim(0), " values for a batch of ",
                x.dim(0), " samples of shape ", x.shape().str());
    const Var<T> g = grad(sum(up), {x}, {.create_graph = true})[0];
    return sum(Var<T>(square(reshape(g, Shape{x.dim(0), -1}))), 1);
}

namespace detail {
// A fresh leaf holding x's value, requiring grad: the point where ∇_x is taken.
template <Real T>
Var<T> input_leaf(const Tensor<T>& x) {
    return Var<T>(x, true);
}

// ∇_x f at the points x (a leaf), flattened per sample to [B, D], recorded.
template <Real T, class F>
Var<T> input_gradient(F&& f, const Var<T>& x, const char* op) {
    EMBER_CHECK(grad_enabled(), op, "called with grad mode off (inside NoGrad): the gradient of the critic could not be "
                "recorded, so the penalty would be silently zero");
    const Var<T> u = call_per_sample(f, x, op);
    const Var<T> g = grad(sum(u), {x}, {.create_graph = true})[0];
    return reshape(g, Shape{x.dim(0), -1});
}

// ||∇_x f(x̂)||₂ per sample at the points x̂ [B, ...], recorded, for a penalty of weight lambda.
template <Real T, class F>
Var<T> gradient_norms_at(F&& f, const Tensor<T>& x_hat, double lambda, const char* op) {
    EMBER_CHECK(lambda >= 0, op, "lambda must be >= 0, got ", lambda);
    const Var<T> x = input_leaf(x_hat);
    check_batch(x, op, "x_hat");
    return norm2(input_gradient(f, x, op), 1);
}

template <Real T>
void check_pair(const Var<T>& a, const Var<T>& b, const char* op) {
    check_batch(a, op, "x_real");
    check_batch(b, op, "x_fake");
    EMBER_CHECK(a.shape() == b.shape(), op, "real and fake batches must have the same shape, got ", a.shape().str(),
                " and ", b.shape().str());
}

// The two ends of the interpolation segments: batches [B,...] of one shape, B >= 1.
template <Real T>
void check_segment_ends(const Tensor<T>& x_real, const Tensor<T>& x_fake, const char* op) {
    EMBER_CHECK(x_real.rank() >= 1 && x_real.dim(0) >= 1 && x_real.shape() == x_fake.shape(), op,
                "needs two batches [B,...] of the same shape with B >= 1, got ", x_real.shape().str(), " and ",
                x_fake.shape().str());
}
}  // namespace detail

/// Zero-centred gradient penalty on real data ("R1", Mescheder et al.\ 2018):
/// λ E_p ||∇_x U(x)||², the batch mean over x_real of the squared gradient norm (their γ/2
/// is λ). It pushes the energy surface to be
/// flat at the data, which stabilises energy and GAN training. Smooth everywhere.
///
///     Var<float> loss = energy::contrastive_loss(U, x, x_neg) + energy::r1_penalty(U, x, 10.0);
template <Real T, class F>
Var<T> r1_penalty(F&& f, const Var<T>& x_real, double lambda) {
    EMBER_CHECK(lambda >= 0, "r1_penalty", "lambda must be >= 0, got ", lambda);
    detail::check_batch(x_real, "r1_penalty", "x_real");
    const Var<T> x = detail::input_leaf(x_real.value());
    const Var<T> g = detail::input_gradient(f, x, "r1_penalty");
    return Var<T>(mean(sum(Var<T>(square(g)), 1)) * static_cast<T>(lambda));
}

/// x̂ = ε x + (1-ε) x̃ with a given ε of shape [B], one weight per sample: the interpolates
/// of random_interpolation for an ε of the caller's (to reproduce a reference computation,
/// or to share ε between runs).
///
///     Tensor<float> xh = energy::interpolate(x.value(), fake.value(), eps);   // eps: [B]
template <Real T>
Tensor<T> interpolate(const Tensor<T>& x_real, const Tensor<T>& x_fake, const Tensor<T>& eps) {
    detail::check_segment_ends(x_real, x_fake, "interpolate");
    EMBER_CHECK(eps.shape() == Shape{x_real.dim(0)}, "interpolate", "eps must have shape [", x_real.dim(0),
                "] (one weight per sample), got ", eps.shape().str());
    std::vector<Index> dims(static_cast<std::size_t>(x_real.rank()), 1);
    dims[0] = x_real.dim(0);
    const Tensor<T> e = eps.contiguous().reshape(Shape(std::span<const Index>(dims)));  // [B,1,...,1]
    return Tensor<T>(e * x_real + (T(1) - e) * x_fake);
}

/// x̂ = ε x + (1-ε) x̃ with ε ~ U[0,1] drawn PER SAMPLE (shape [B,1,...,1], broadcast over
/// the non-batch axes) from `gen`: points on the segments between paired real and fake
/// samples, where WGAN-GP enforces the unit gradient norm. Advances gen by ceil(B/2)
/// blocks. A Tensor (no graph): x̂ is a constant input of the critic.
///
///     Tensor<float> xh = energy::random_interpolation(x.value(), fake.value(), gen);
template <Real T>
Tensor<T> random_interpolation(const Tensor<T>& x_real, const Tensor<T>& x_fake, Generator& gen) {
    detail::check_segment_ends(x_real, x_fake, "random_interpolation");  // before gen advances
    return interpolate(x_real, x_fake, uniform<T>(Shape{x_real.dim(0)}, gen));
}

/// WGAN-GP's penalty at given points x̂ (e.g. from interpolate): λ E_x̂ (||∇_x D(x̂)||₂ - 1)².
/// wgan_gp_penalty is this at random interpolates.
///
///     Var<float> gp = energy::wgan_gp_penalty_at(D, energy::interpolate(x.value(), fake.value(), eps), 10.0);
template <Real T, class F>
Var<T> wgan_gp_penalty_at(F&& f, const Tensor<T>& x_hat, double lambda) {
    const Var<T> n = detail::gradient_norms_at(f, x_hat, lambda, "wgan_gp_penalty");
    return Var<T>(mean(square(n - T(1))) * static_cast<T>(lambda));
}

/// The one-sided penalty (one_sided_gp_penalty) at given points x̂.
template <Real T, class F>
Var<T> one_sided_gp_penalty_at(F&& f, const Tensor<T>& x_hat, double lambda) {
    const Var<T> n = detail::gradient_norms_at(f, x_hat, lambda, "one_sided_gp_penalty");
    return Var<T>(mean(square(relu(n - T(1)))) * static_cast<T>(lambda));
}

/// WGAN-GP (Gulrajani et al.\ 2017): λ E_x̂ (||∇_x D(x̂)||₂ - 1)² at x̂ = random_interpolation
/// (x_real, x_fake, gen), a soft 1-Lipschitz constraint for the Wasserstein critic. ε is
/// drawn per sample from `gen`. See the file comment for ||g|| = 0.
///
///     Var<float> loss = gan::wasserstein_critic_loss(D(x), D(fake)) + energy::wgan_gp_penalty(D, x, fake, gen, 10.0);
template <Real T, class F>
Var<T> wgan_gp_penalty(F&& f, const Var<T>& x_real, const Var<T>& x_fake, Generator& gen, double lambda) {
    EMBER_CHECK(lambda >= 0, "wgan_gp_penalty", "lambda must be >= 0, got ", lambda);
    detail::check_pair(x_real, x_fake, "wgan_gp_penalty");
    return wgan_gp_penalty_at(f, random_interpolation(x_real.value(), x_fake.value(), gen), lambda);
}

/// One-sided variant (Petzka et al.\ 2018): λ E_x̂ max(0, ||∇_x D(x̂)||₂ - 1)², which only
/// penalises gradients steeper than 1 (the Lipschitz constraint itself), at the same
/// per-sample interpolates. Differentiable everywhere, including at ∇D = 0.
///
///     Var<float> gp = energy::one_sided_gp_penalty(D, x, fake, gen, 10.0);
template <Real T, class F>
Var<T> one_sided_gp_penalty(F&& f, const Var<T>& x_real, const Var<T>& x_fake, Generator& gen, double lambda) {
    EMBER_CHECK(lambda >= 0, "one_sided_gp_penalty", "lambda must be >= 0, got ", lambda);
    detail::check_pair(x_real, x_fake, "one_sided_gp_penalty");
    return one_sided_gp_penalty_at(f, random_interpolation(x_real.value(), x_fake.value(), gen), lambda);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_PENALTY_INSTANCES(X, T) \
    X template Var<T> grad_sq_norm_per_sample<T>(const Var<T>&, const Var<T>&); \
    X template Tensor<T> random_interpolation<T>(const Tensor<T>&, const Tensor<T>&, Generator&); \
    X template Tensor<T> interpolate<T>(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&);
EMBER_EXTERN_INSTANCES(EMBER_PENALTY_INSTANCES)

}  // namespace ember::energy
