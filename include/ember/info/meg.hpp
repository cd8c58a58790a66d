#pragma once
/// \file
/// The maximum-entropy generator (MEG, Kumar et al.\ 2019; docs/math.md §2).
///
/// A generator G trained as a sampler of the energy model q_θ(x) = e^{-U(x)}/Z minimises
///
///     KL(q_φ || q_θ) = E_z[U(G(z))] - H(q_φ) + log Z_θ,
/// and for a deterministic G the entropy H(q_φ) equals I(G(Z); Z) up to a constant, so
/// the generator's loss is the energy of its samples minus an MI estimate:
///
///     L_G = E_z[U(G(z))] - β Î(G(z); z).
/// Î comes from any estimator of mi.hpp on a critic T(G(z), z) trained alongside (MEG uses
/// jsd: joint pairs (G(z_i), z_i), marginal pairs (G(z_i), z_π(i))). The generator loss
/// -I_JSD(G(Z), Z) + E_z[D(G(z))] of Tintin's note "Energy-based GAN" is this with β = 1;
/// the energy U itself is trained with L_U = mean U(x) - mean U(G(z)) plus a gradient
/// penalty (docs/math.md §1).
///
///     Var<float> u = energy(G(z));                                        // [B] or [B,1]
///     Var<float> mi = info::jsd(info::score_matrix(g(G(z)), h(z)));       // scalar
///     Var<float> loss = info::meg_generator_loss(u, mi, 1.0);
#include <cmath>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/ops/reduce.hpp"

namespace ember::info {

/// L_G = mean(energies) - β·mi_estimate, to minimise over the generator's parameters.
/// `energies`: U(G(z_i)) for the batch, any non-empty shape (usually [B] or [B,1]), averaged
/// over all elements. `mi_estimate`: a scalar (one element) estimate of I(G(z); z) whose
/// graph reaches the generator (through G(z) in the critic's input). β ≥ 0 weighs entropy
/// against energy: β = 0 is pure energy descent (mode collapse), larger β spreads samples.
template <Real T>
Var<T> meg_generator_loss(const Var<T>& energies, const Var<T>& mi_estimate, double beta = 1.0) {
    EMBER_CHECK(energies.defined() && energies.numel() > 0, "meg_generator_loss",
                "energies must be a non-empty tensor of U(G(z)) values, got ",
                energies.defined() ? energies.shape().str() : "undefined");
    EMBER_CHECK(mi_estimate.defined() && mi_estimate.numel() == 1, "meg_generator_loss",
                "the MI estimate must be a scalar (one element), got shape ",
                mi_estimate.defined() ? mi_estimate.shape().str() : "undefined");
    EMBER_CHECK(beta >= 0 && std::isfinite(beta), "meg_generator_loss", "beta must be finite and >= 0, got ", beta);
    const Var<T> mi = mi_estimate.rank() == 0 ? mi_estimate : reshape(mi_estimate, Shape{});
    return Var<T>(mean(energies) - mi * static_cast<T>(beta));
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_MEG_INSTANCES(X, T) \
    X template Var<T> meg_generator_loss<T>(const Var<T>&, const Var<T>&, double);
EMBER_EXTERN_INSTANCES(EMBER_MEG_INSTANCES)

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS(meg_generator_loss)

}  // namespace ember::info
