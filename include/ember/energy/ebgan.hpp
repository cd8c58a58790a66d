#pragma once
/// \file
/// Energy-based GAN (Zhao, Mathieu & LeCun 2017; docs/math.md §3). The discriminator
/// is an auto-encoder whose reconstruction error is the energy: low on data, pushed up to a
/// margin m on generated samples. The generator lowers the energy of its samples and, with
/// the pulling-away term, keeps their codes from collapsing onto one direction.
#include <cmath>

#include "ember/core/instances.hpp"
#include "ember/energy/contrastive.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember::energy {

/// Auto-encoder energy D(x) = ||Dec(Enc(x)) - x||² as the mean squared error per sample:
/// D(x)_i = (1/K) Σ_k (recon_ik - x_ik)² over the K non-batch elements. x and its
/// reconstruction must have the same shape [B, ...] (rank >= 2). Returns [B].
///
///     Var<float> d_real = energy::autoencoder_energy(x, dec(enc(x)));
template <Real T>
Var<T> autoencoder_energy(const Var<T>& x, const Var<T>& reconstruction) {
    EMBER_CHECK(x.defined() && reconstruction.defined(), "autoencoder_energy", "undefined input");
    EMBER_CHECK(x.rank() >= 2 && x.dim(0) >= 1 && x.numel() > 0 && x.shape() == reconstruction.shape(),
                "autoencoder_energy", "x and its reconstruction must have the same shape [B, ...] (rank >= 2), got ",
                x.shape().str(), " and ", reconstruction.shape().str());
    const Var<T> diff2 = square(reconstruction - x);
    return mean(reshape(diff2, Shape{x.dim(0), -1}), 1);
}

/// Margin hinge per sample, [m - D(G(z))]_+ = max(0, m - d_fake[i]); zero once a generated
/// sample's energy reaches the margin m > 0, so the discriminator stops pushing it up.
/// Returns [B].
///
///     Var<float> h = energy::margin_hinge(d_fake, 10.0);
template <Real T>
Var<T> margin_hinge(const Var<T>& d_fake, double margin) {
    EMBER_CHECK(margin > 0 && std::isfinite(margin), "margin_hinge", "margin must be positive and finite, got ", margin);
    const Var<T> d = detail::per_sample(d_fake, "margin_hinge", "d_fake");
    return relu(static_cast<T>(margin) - d);
}

/// EBGAN discriminator loss L_D = E[D(x)] + E[m - D(G(z))]_+ from per-sample energies of
/// real and generated samples ([B] or [B,1]). Compute d_fake on detached generator
/// samples, D(G(z).detach()), so that this loss trains the discriminator only.
///
///     Var<float> loss_d = energy::ebgan_discriminator_loss(d_real, d_fake, 10.0);
template <Real T>
Var<T> ebgan_discriminator_loss(const Var<T>& d_real, const Var<T>& d_fake, double margin) {
    const Var<T> dr = detail::per_sample(d_real, "ebgan_discriminator_loss", "d_real");
    return Var<T>(mean(dr) + mean(margin_hinge(d_fake, margin)));
}

/// Pulling-away term (the paper's formula; docs/math.md §3) on codes S [B, ...] (flattened to
/// [B, K] per sample):
///
///     f_PT(S) = 1/(B(B-1)) Σ_i Σ_{j≠i} (S_iᵀS_j / (||S_i|| ||S_j||))²,
/// the mean squared cosine similarity over ordered pairs of distinct samples, in [0, 1].
/// (PyTorch-GAN's EBGAN code sums the un-squared cosine matrix including its diagonal;
/// that is not the paper's term: its diagonal adds the constant B and unsquared cosines of
/// opposite sign cancel.) Computed as C = Ŝ Ŝᵀ with unit rows Ŝ_i = S_i / max(||S_i||, 1e-12), then
/// Σ over the off-diagonal of C², with the diagonal masked out exactly (not subtracted,
/// which would leave rounding noise in the value and gradient). A zero code row therefore
/// has cosine 0 with every other row instead of 0/0. Needs B >= 2.
///
///     Var<float> pt = energy::pulling_away(enc(G(z)));
template <Real T>
Var<T> pulling_away(const Var<T>& codes) {
    EMBER_CHECK(codes.defined(), "pulling_away", "undefined codes");
    EMBER_CHECK(codes.rank() >= 2 && codes.numel() > 0, "pulling_away", "codes must be a batch [B, K, ...], got ",
                codes.shape().str());
    const Index B = codes.dim(0);
    EMBER_CHECK(B >= 2, "pulling_away", "needs at least 2 samples (pairs i != j), got a batch of shape ",
                codes.shape().str());
    const Var<T> s = reshape(codes, Shape{B, -1});
    const Var<T> n = norm2(s, 1, true);
    const Var<T> unit = s / maximum(n, T(1e-12));
    const Var<T> cos = matmul(unit, transpose(unit));
    Tensor<T> off = Tensor<T>::ones(Shape{B, B});
    for (Index i = 0; i < B; ++i) off.data()[i * B + i] = T(0);
    const T scale = T(1) / static_cast<T>(B * (B - 1));
    return Var<T>(sum(Var<T>(square(cos) * off)) * scale);
}

/// EBGAN generator loss L_G = E[D(G(z))] (+ λ_PT f_PT(S) in the overload below), from the
/// per-sample energies of generated samples, computed WITHOUT detaching G(z).
///
///     Var<float> loss_g = energy::ebgan_generator_loss(d_fake);
template <Real T>
Var<T> ebgan_generator_loss(const Var<T>& d_fake) {
    return mean(detail::per_sample(d_fake, "ebgan_generator_loss", "d_fake"));
}

/// L_G = E[D(G(z))] + λ_PT f_PT(S) with S = Enc(G(z)) the discriminator's codes of the
/// generated batch (the paper uses λ_PT = 0.1).
///
///     Var<float> loss_g = energy::ebgan_generator_loss(d_fake, enc(fake), 0.1);
template <Real T>
Var<T> ebgan_generator_loss(const Var<T>& d_fake, const Var<T>& codes, double lambda_pt) {
    EMBER_CHECK(lambda_pt >= 0, "ebgan_generator_loss", "lambda_pt must be >= 0, got ", lambda_pt);
    const Var<T> d = detail::per_sample(d_fake, "ebgan_generator_loss", "d_fake");
    EMBER_CHECK(codes.defined() && codes.rank() >= 1 && codes.dim(0) == d.dim(0), "ebgan_generator_loss", "codes ",
                codes.defined() ? codes.shape().str() : std::string("(undefined)"), " must have one row per sample of d_fake ",
                d_fake.shape().str());
    return Var<T>(mean(d) + pulling_away(codes) * static_cast<T>(lambda_pt));
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_EBGAN_INSTANCES(X, T) \
    X template Var<T> autoencoder_energy<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> margin_hinge<T>(const Var<T>&, double); \
    X template Var<T> ebgan_discriminator_loss<T>(const Var<T>&, const Var<T>&, double); \
    X template Var<T> pulling_away<T>(const Var<T>&); \
    X template Var<T> ebgan_generator_loss<T>(const Var<T>&); \
    X template Var<T> ebgan_generator_loss<T>(const Var<T>&, const Var<T>&, double);
EMBER_EXTERN_INSTANCES(EMBER_EBGAN_INSTANCES)

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS(autoencoder_energy)
EMBER_TAKES_EXPRESSIONS(margin_hinge)
EMBER_TAKES_EXPRESSIONS(ebgan_discriminator_loss)
EMBER_TAKES_EXPRESSIONS(pulling_away)
EMBER_TAKES_EXPRESSIONS(ebgan_generator_loss)

}  // namespace ember::energy
