#pragma once
// One training step of each model trained on the nets of common/conv_gan.hpp, shared by
// examples/meg_mnist.cpp, examples/wgan_gp_mnist.cpp and examples/stacked_mnist.cpp (whose
// file comments give the losses): real images come from `next_real` ([B,C,28,28] in [-1, 1],
// a fresh batch on each call), every z, ε and derangement from `noise`.
#include <functional>

#include "conv_gan.hpp"
#include "latent_mala.hpp"

namespace ember_examples {

// ---- MEG (Kumar et al. 2019) ------------------------------------------------------------------

struct MegStepOptions {
    double beta = 1.0, lambda = 10.0;  // weights of the entropy (MI) term in L_G and of the R1 penalty in L_U
    int energy_steps = 1;              // U steps per G step, each on its own batch of real images
};

struct MegLosses { float u, g, u_real, u_fake, r1, mi; };  // L_U, L_G, mean U(x), mean U(G(z)), R1, Î_JSD

// energy_steps steps of U, the negatives G(z) detached, then one step of G and T through the
// updated U.
inline MegLosses meg_step(Meg& m, const MegStepOptions& o, const std::function<ember::Tensor<float>()>& next_real,
                          ember::Generator& noise) {
    using Var = ember::Var<float>;
    ember::nn::Sequential<float>&G = m.gan.G, &U = m.gan.D;
    MegLosses l{};
    ember::Index batch = 0;
    for (int k = 0; k < o.energy_steps; ++k) {  // U: L_U, the negatives G(z) detached
        const Var x(next_real());
        batch = x.dim(0);
        const ember::Tensor<float> fake = [&] {
            ember::NoGrad no_grad;
            return G(Var(ember::normal<float>(ember::Shape{batch, m.gan.latent}, noise))).value();
        }();
        const Var u_pos = U(x), u_neg = U(Var(fake));
        const Var r1 = ember::energy::r1_penalty(U, x, o.lambda);
        const Var loss_u = ember::energy::contrastive_loss(u_pos, u_neg) + r1;
        m.opt_U.zero_grad();
        ember::backward(loss_u);
        m.opt_U.step();
        l.u = loss_u.item(), l.r1 = r1.item();
        l.u_real = ember::mean(u_pos.value()).item(), l.u_fake = ember::mean(u_neg.value()).item();
    }

    // G and T: L_G, U frozen meanwhile.
    const Var z(ember::normal<float>(ember::Shape{batch, m.gan.latent}, noise));
    const Var fake = G(z);
    const Var fake_flat = ember::flatten(fake, 1);
    const auto pairs = ember::info::shuffled_pairs(fake_flat, z, noise);  // (G(z_i), z_π(i))
    const Var mi = ember::info::jsd(m.T(fake_flat, z), m.T(fake_flat, pairs.z));
    U.requires_grad(false);
    const Var u_gen = U(ember::reshape(fake_flat, fake.shape()));
    const Var loss_g = ember::info::meg_generator_loss(u_gen, mi, o.beta);
    m.opt_G.zero_grad(), m.opt_T.zero_grad();
    ember::backward(loss_g);
    m.opt_G.step(), m.opt_T.step();
    U.requires_grad(true);
    l.g = loss_g.item(), l.mi = mi.item();
    return l;
}

// MEG's sampler at the end of training: latent MALA on U(G(z)) + ½||z||² from z0
// (common/latent_mala.hpp). G goes to evaluation mode (running statistics: a chain does not
// depend on the others) and both networks are frozen, for good: only ∇_z is needed.
// More than 1000 chains run as groups of 1000 one after the other (the graph of a step takes
// about 1 MB per chain), group g seeded seed + g with its own step size; the statistics
// returned are the means over the chains.
inline LatentMala meg_latent_mala(Meg& m, const ember::Tensor<float>& z0, std::int64_t warmup, std::int64_t steps,
                                  std::uint64_t seed) {
    using Var = ember::Var<float>;
    ember::nn::Sequential<float>&G = m.gan.G, &U = m.gan.D;
    G.eval(), G.requires_grad(false), U.requires_grad(false);
    const auto run = [&](const ember::Tensor<float>& z, std::uint64_t s) {
        return latent_mala([&](const Var& x) { return G(x); }, [&](const Var& x) { return U(x); }, z, warmup, steps, s);
    };
    constexpr ember::Index group = 1000;
    const ember::Index n = z0.dim(0);
    if (n <= group) return run(z0, seed);
    LatentMala all{ember::Tensor<float>::empty(z0.shape()), {}, {}, 0, 0};
    const auto add = [](ember::sample::ChainStats& sum, const ember::sample::ChainStats& part, double weight) {
        sum.acceptance.insert(sum.acceptance.end(), part.acceptance.begin(), part.acceptance.end());
        sum.acceptance_rate += weight * part.acceptance_rate;
        sum.mean_accept_prob += weight * part.mean_accept_prob;
        sum.mean_energy += weight * part.mean_energy;
        sum.step_size += weight * part.step_size;
        sum.steps = part.steps;
        sum.nonfinite += part.nonfinite;
    };
    for (ember::Index i = 0; i < n; i += group) {
        const ember::Index j = std::min(n, i + group);
        const LatentMala part = run(z0.slice(0, i, j).contiguous(), seed + static_cast<std::uint64_t>(i / group));
        const double weight = static_cast<double>(j - i) / static_cast<double>(n);
        all.z.slice(0, i, j).copy_from(part.z);
        add(all.warm, part.warm, weight), add(all.run, part.run, weight);
        all.u_start += weight * part.u_start, all.seconds += part.seconds;
    }
    return all;
}

// ---- WGAN-GP (Gulrajani et al. 2017, Algorithm 1) -------------------------------------------

struct WganGpStepOptions {
    int n_critic = 5;    // critic steps per generator step
    double lambda = 10;  // weight of the gradient penalty
};

// The means over the critic's steps of E D(x) - E D(G(z)), the penalty and L_D; L_G.
struct WganLosses { double wasserstein, gp, critic; float g; };

// n_critic critic steps, each on fresh real images and G(z), then one generator step through
// the updated critic.
inline WganLosses wgan_gp_step(ConvGan& gan, ember::Adam<float>& opt_G, ember::Adam<float>& opt_D,
                               const WganGpStepOptions& o, const std::function<ember::Tensor<float>()>& next_real,
                               ember::Generator& noise) {
    using Var = ember::Var<float>;
    double w_est = 0, gp_sum = 0, critic_sum = 0;
    ember::Index B = 0;
    for (int i = 0; i < o.n_critic; ++i) {  // critic: L_D, G's samples detached
        const Var x(next_real());
        B = x.dim(0);
        const Var fake([&] {
            ember::NoGrad no_grad;
            return gan.G(Var(ember::normal<float>(ember::Shape{B, gan.latent}, noise))).value();
        }());
        const Var scores = gan.D(ember::concat<float>({x, fake}, 0));  // one pass for both halves
        const Var loss_w = ember::gan::wasserstein_critic_loss(ember::slice(scores, 0, 0, B),
                                                               ember::slice(scores, 0, B, 2 * B));
        const Var gp = ember::energy::wgan_gp_penalty(gan.D, x, fake, noise, o.lambda);
        const Var loss = loss_w + gp;
        opt_D.zero_grad();
        ember::backward(loss);
        opt_D.step();
        w_est += -loss_w.item(), gp_sum += gp.item(), critic_sum += loss.item();
    }

    // Generator: L_G through the updated critic, its parameters frozen meanwhile.
    gan.D.requires_grad(false);
    const Var loss_g = ember::gan::wasserstein_generator_loss(
        gan.D(gan.G(Var(ember::normal<float>(ember::Shape{B, gan.latent}, noise)))));
    opt_G.zero_grad();
    ember::backward(loss_g);
    opt_G.step();
    gan.D.requires_grad(true);
    const double k = o.n_critic;
    return {w_est / k, gp_sum / k, critic_sum / k, loss_g.item()};
}

// ---- the non-saturating GAN (Goodfellow et al. 2014; DCGAN, Radford et al. 2016) -----------

struct DcganLosses {
    float d, g;
    float d_real, d_fake;  // mean D(x) = σ(a(x)) and D(G(z)), before the D step
};

// One D step on [x; G(z)] (G(z) detached; D has no BatchNorm, so one pass serves both halves),
// then one G step through the updated D.
inline DcganLosses dcgan_step(ConvGan& gan, ember::Adam<float>& opt_G, ember::Adam<float>& opt_D,
                              const std::function<ember::Tensor<float>()>& next_real, ember::Generator& noise) {
    using Var = ember::Var<float>;
    const Var x(next_real());
    const ember::Index B = x.dim(0);
    const Var fake = gan.G(Var(ember::normal<float>(ember::Shape{B, gan.latent}, noise)));
    const Var logits = gan.D(ember::concat<float>({x, fake.detach()}, 0));
    const Var loss_d = ember::gan::discriminator_loss(ember::slice(logits, 0, 0, B), ember::slice(logits, 0, B, 2 * B));
    opt_D.zero_grad();
    ember::backward(loss_d);
    opt_D.step();

    gan.D.requires_grad(false);
    const Var loss_g = ember::gan::generator_loss_nonsaturating(gan.D(fake));
    opt_G.zero_grad();
    ember::backward(loss_g);
    opt_G.step();
    gan.D.requires_grad(true);

    ember::NoGrad no_grad;
    const ember::Tensor<float> p = ember::sigmoid(logits.value());
    return {loss_d.item(), loss_g.item(), ember::mean(p.slice(0, 0, B)).item(), ember::mean(p.slice(0, B, 2 * B)).item()};
}

}  // namespace ember_examples
