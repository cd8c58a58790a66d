#pragma once
/// \file
/// GAN losses (docs/math.md §4): the classic minimax game from logits, its non-saturating
/// generator loss, the Wasserstein critic with weight clipping, and the hinge loss. All in
/// namespace ember::gan; every loss is a batch mean over all elements of its inputs (one
/// value per sample, or per patch for a patch discriminator).
///
/// Classic GAN with logits a (D = σ(a)): log D = log σ(a) = -sp(-a) and log(1 - D) =
/// log σ(-a) = -sp(a), with sp the stable softplus max(a,0) + log1p(e^{-|a|}) (docs/math.md §8),
/// so no loss ever takes the log of a probability that rounded to 0 or 1. The value
/// V(D,G) = E_p log D(x) + E_z log(1 - D(G(z))) is -discriminator_loss; at the optimal
/// discriminator D* = p/(p+q) it equals 2·JSD(p||q) - log 4.
#include <cmath>
#include <string>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/reduce.hpp"

/// GAN losses from discriminator outputs: the classic minimax game and its non-saturating
/// generator loss, the Wasserstein critic with weight clipping, and the hinge loss.
namespace ember::gan {

namespace detail {
template <Real T>
void check_scores(const Var<T>& a, const char* op, const char* what) {
    EMBER_CHECK(a.defined() && a.numel() > 0, op, what, " must be a non-empty tensor of discriminator outputs, got ",
                a.defined() ? a.shape().str() : std::string("(undefined)"));
}
}  // namespace detail

/// Discriminator binary cross-entropy from logits: -E_p log D(x) - E_z log(1 - D(G(z)))
/// = E sp(-a_real) + E sp(a_fake). Compute a_fake on detached generator samples.
///
///     Var<float> loss_d = gan::discriminator_loss(D(x), D(G(z).detach()));
template <Real T>
Var<T> discriminator_loss(const Var<T>& a_real, const Var<T>& a_fake) {
    detail::check_scores(a_real, "gan::discriminator_loss", "a_real");
    detail::check_scores(a_fake, "gan::discriminator_loss", "a_fake");
    return Var<T>(mean(Var<T>(softplus(-a_real))) + mean(Var<T>(softplus(a_fake))));
}

/// Minimax (saturating) generator loss E_z log(1 - D(G(z))) = -E sp(a_fake): the game's
/// own objective, whose gradient vanishes while the discriminator rejects the samples.
///
///     Var<float> loss_g = gan::generator_loss_minimax(D(G(z)));
template <Real T>
Var<T> generator_loss_minimax(const Var<T>& a_fake) {
    detail::check_scores(a_fake, "gan::generator_loss_minimax", "a_fake");
    return Var<T>(-mean(Var<T>(softplus(a_fake))));
}

/// Non-saturating generator loss -E_z log D(G(z)) = E sp(-a_fake): same fixed point, strong
/// gradients early in training (Goodfellow et al.\ 2014).
///
///     Var<float> loss_g = gan::generator_loss_nonsaturating(D(G(z)));
template <Real T>
Var<T> generator_loss_nonsaturating(const Var<T>& a_fake) {
    detail::check_scores(a_fake, "gan::generator_loss_nonsaturating", "a_fake");
    return mean(Var<T>(softplus(-a_fake)));
}

/// Wasserstein-1 critic loss (to minimise): E D(x̃) - E D(x), the negated estimate of
/// W1 = max over 1-Lipschitz D of E_p D - E_q D. Needs a Lipschitz constraint: clip_weights
/// or a gradient penalty (energy::wgan_gp_penalty).
///
///     Var<float> loss_c = gan::wasserstein_critic_loss(D(x), D(fake.detach()));
template <Real T>
Var<T> wasserstein_critic_loss(const Var<T>& d_real, const Var<T>& d_fake) {
    detail::check_scores(d_real, "gan::wasserstein_critic_loss", "d_real");
    detail::check_scores(d_fake, "gan::wasserstein_critic_loss", "d_fake");
    return Var<T>(mean(d_fake) - mean(d_real));
}

/// Wasserstein generator loss -E D(G(z)).
///
///     Var<float> loss_g = gan::wasserstein_generator_loss(D(G(z)));
template <Real T>
Var<T> wasserstein_generator_loss(const Var<T>& d_fake) {
    detail::check_scores(d_fake, "gan::wasserstein_generator_loss", "d_fake");
    return Var<T>(-mean(d_fake));
}

/// Hinge critic loss (Lim & Ye 2017; Miyato et al.\ 2018): E relu(1 - D(x)) + E relu(1 + D(x̃)).
///
///     Var<float> loss_c = gan::hinge_critic_loss(D(x), D(fake.detach()));
template <Real T>
Var<T> hinge_critic_loss(const Var<T>& d_real, const Var<T>& d_fake) {
    detail::check_scores(d_real, "gan::hinge_critic_loss", "d_real");
    detail::check_scores(d_fake, "gan::hinge_critic_loss", "d_fake");
    return Var<T>(mean(Var<T>(relu(T(1) - d_real))) + mean(Var<T>(relu(T(1) + d_fake))));
}

/// Hinge generator loss -E D(G(z)) (the same as the Wasserstein one).
///
///     Var<float> loss_g = gan::hinge_generator_loss(D(G(z)));
template <Real T>
Var<T> hinge_generator_loss(const Var<T>& d_fake) {
    detail::check_scores(d_fake, "gan::hinge_generator_loss", "d_fake");
    return Var<T>(-mean(d_fake));
}

/// Weight clipping (WGAN, Arjovsky et al.\ 2017): clamps every element of every
/// parameter to [-c, c], in place, after each critic step; the crude way to keep the critic
/// K-Lipschitz. Like the WGAN reference code it clips all parameters (weights and biases).
/// Runs under NoGrad and records nothing; NaN stays NaN (as torch.clamp_).
///
///     opt_d.step(); gan::clip_weights(D.parameters(), 0.01);
template <Real T>
void clip_weights(const std::vector<Var<T>>& params, double c) {
    EMBER_CHECK(c > 0 && std::isfinite(c), "gan::clip_weights", "the clipping bound c must be positive and finite, got ",
                c);
    NoGrad no_grad;
    for (const Var<T>& p : params) {
        EMBER_CHECK(p.defined(), "gan::clip_weights", "undefined parameter");
        assign(p.value(), clamp(p.value(), -c, c));
    }
}

/// The same for all parameters of a module (and its children).
///
///     gan::clip_weights(D, 0.01);
template <Real T>
void clip_weights(const nn::Module<T>& module, double c) {
    clip_weights(module.parameters(), c);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_GAN_LOSS_INSTANCES(X, T) \
    X template Var<T> discriminator_loss<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> generator_loss_minimax<T>(const Var<T>&); \
    X template Var<T> generator_loss_nonsaturating<T>(const Var<T>&); \
    X template Var<T> wasserstein_critic_loss<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> wasserstein_generator_loss<T>(const Var<T>&); \
    X template Var<T> hinge_critic_loss<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> hinge_generator_loss<T>(const Var<T>&); \
    X template void clip_weights<T>(const std::vector<Var<T>>&, double); \
    X template void clip_weights<T>(const nn::Module<T>&, double);
EMBER_EXTERN_INSTANCES(EMBER_GAN_LOSS_INSTANCES)

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS(discriminator_loss)
EMBER_TAKES_EXPRESSIONS(generator_loss_minimax)
EMBER_TAKES_EXPRESSIONS(generator_loss_nonsaturating)
EMBER_TAKES_EXPRESSIONS(wasserstein_critic_loss)
EMBER_TAKES_EXPRESSIONS(wasserstein_generator_loss)
EMBER_TAKES_EXPRESSIONS(hinge_critic_loss)
EMBER_TAKES_EXPRESSIONS(hinge_generator_loss)

}  // namespace ember::gan
