#pragma once
/// \file
/// The contrastive loss that trains an energy-based model q_θ(x) = exp(-U_θ(x)) / Z_θ, and
/// the energy-magnitude regulariser (docs/math.md §1).
///
/// The gradient of the negative log-likelihood is a positive phase minus a negative phase,
///
///     ∇_θ E_p[-log q_θ(x)] = E_p[∇_θ U_θ(x)] - E_{q_θ}[∇_θ U_θ(x)],
/// and the batch surrogate whose gradient is exactly that is
///
///     L_U = mean_i U(x_i) - mean_j U(x̃_j),
/// with x ~ p (data) and x̃ ~ q_θ (negatives from a generator, a Langevin chain or a replay
/// buffer). The negatives are treated as fixed samples: no gradient may flow into whatever
/// produced them (the generator, the chain), but the ENERGY of a negative must stay
/// differentiable in θ, otherwise the negative phase vanishes and the loss only pushes
/// energies down everywhere. So it is the samples x̃ that are detached, not U(x̃):
/// `contrastive_loss(U, x, x_neg)` does that itself; `contrastive_loss(u_pos, u_neg)` takes
/// energies that the caller computed on already-detached negatives.
#include <string>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember::energy {

namespace detail {
// Per-sample values (energies, critic outputs) as a [B] Var. Accepts [B] or [B,1] with
// B >= 1; anything else is an error naming `op`, which argument and its shape. Shared by
// the headers of ember/energy/.
template <Real T>
Var<T> per_sample(const Var<T>& u, const char* op, const char* what) {
    EMBER_CHECK(u.defined(), op, what, " is undefined");
    const bool ok = (u.rank() == 1 || (u.rank() == 2 && u.dim(1) == 1)) && u.dim(0) >= 1;
    EMBER_CHECK(ok, op, what, " must hold one value per sample, shape [B] or [B,1] with B >= 1, got ",
                u.shape().str());
    return u.rank() == 1 ? u : reshape(u, Shape{u.dim(0)});
}

// Calls the energy/critic `f` on x and checks that it returned one value per sample of x.
template <Real T, class F>
Var<T> call_per_sample(F&& f, const Var<T>& x, const char* op) {
    const Var<T> u = per_sample(Var<T>(f(x)), op, "the energy/critic output");
    EMBER_CHECK(u.dim(0) == x.dim(0), op, "the energy/critic returned ", u.dim(0), " values for a batch of ",
                x.dim(0), " samples of shape ", x.shape().str());
    return u;
}

template <Real T>
void check_batch(const Var<T>& x, const char* op, const char* what) {
    EMBER_CHECK(x.defined(), op, what, " is undefined");
    EMBER_CHECK(x.rank() >= 1 && x.dim(0) >= 1, op, what, " must be a batch [B,...] with B >= 1, got ",
                x.shape().str());
}
}  // namespace detail

/// L_U = mean_i u_pos[i] - mean_j u_neg[j], from per-sample energies u_pos = U(x) of the
/// data and u_neg = U(x̃) of the negatives (each [B] or [B,1]; the batch sizes may differ).
/// Neither side is detached here: U(x̃) must carry its gradient in θ (the negative phase).
/// Compute u_neg on detached negatives, U(x_neg.detach()), or use the overload below.
///
///     Var<float> loss = energy::contrastive_loss(U(x), U(x_neg.detach()));
template <Real T>
Var<T> contrastive_loss(const Var<T>& u_pos, const Var<T>& u_neg) {
    const Var<T> up = detail::per_sample(u_pos, "contrastive_loss", "u_pos");
    const Var<T> un = detail::per_sample(u_neg, "contrastive_loss", "u_neg");
    return Var<T>(mean(up) - mean(un));
}

/// The same loss from the energy function U (any callable Var [B,...] -> Var [B] or [B,1],
/// e.g.\ an nn::Module) and the two batches: the negatives are detached before U sees them,
/// so no gradient reaches the generator or chain that produced them, while U's parameters
/// get both phases. Its gradient is mean_i ∇_θU(x_i) - mean_j ∇_θU(x̃_j).
///
///     Var<float> loss = energy::contrastive_loss(net, x, G(z));
template <Real T, class F>
Var<T> contrastive_loss(F&& energy, const Var<T>& x_pos, const Var<T>& x_neg) {
    detail::check_batch(x_pos, "contrastive_loss", "x_pos");
    detail::check_batch(x_neg, "contrastive_loss", "x_neg");
    const Var<T> up = detail::call_per_sample(energy, x_pos, "contrastive_loss");
    const Var<T> un = detail::call_per_sample(energy, x_neg.detach(), "contrastive_loss");
    return Var<T>(mean(up) - mean(un));
}

/// Energy-magnitude regulariser (IGEBM): α E[U(x)² + U(x̃)²] = α (mean_i u_pos[i]² +
/// mean_j u_neg[j]²). It keeps the energies near zero, which the contrastive loss alone
/// does not (it is invariant to adding a constant to U). Both sides are differentiable in θ.
///
///     Var<float> loss = energy::contrastive_loss(up, un) + energy::magnitude_penalty(up, un, 1.0);
template <Real T>
Var<T> magnitude_penalty(const Var<T>& u_pos, const Var<T>& u_neg, double alpha) {
    EMBER_CHECK(alpha >= 0, "magnitude_penalty", "alpha must be >= 0, got ", alpha);
    const Var<T> up = detail::per_sample(u_pos, "magnitude_penalty", "u_pos");
    const Var<T> un = detail::per_sample(u_neg, "magnitude_penalty", "u_neg");
    return Var<T>((mean(Var<T>(square(up))) + mean(Var<T>(square(un)))) * static_cast<T>(alpha));
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CONTRASTIVE_INSTANCES(X, T) \
    X template Var<T> contrastive_loss<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> magnitude_penalty<T>(const Var<T>&, const Var<T>&, double);
EMBER_EXTERN_INSTANCES(EMBER_CONTRASTIVE_INSTANCES)

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS(contrastive_loss)
EMBER_TAKES_EXPRESSIONS(magnitude_penalty)

}  // namespace ember::energy
