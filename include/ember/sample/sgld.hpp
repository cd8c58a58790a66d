#pragma once
/// \file
/// Stochastic-gradient Langevin dynamics as energy-based models are trained with it
/// (IGEBM, Du and Mordatch 2019; JEM, Grathwohl et al.\ 2020), docs/math.md §7:
///
///     x ← clamp(x - α clip(∇U(x)) + σ ξ),  ξ ~ N(0, I),  K times,
/// with the step α and the noise σ set separately (σ = √(2α) would be Langevin proper; EBM
/// practice uses far less noise, so these chains are a short-run optimiser with noise, not
/// an exact sampler), the gradient optionally clipped element-wise, and the states
/// optionally clamped to the data range after each step. There is no accept step: the
/// energy and gradient must stay finite, or the call stops with an error naming the chain.
/// The chains usually start from a ReplayBuffer (sample/replay_buffer.hpp).
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>

#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/ops/packed_weights.hpp"
#include "ember/sample/energy.hpp"

namespace ember::sample {

/// Settings of sgld.
struct SgldOptions {
    double step_size = 1.0;  ///< α, multiplies ∇U
    double noise = 0.01;     ///< σ, standard deviation of the noise added per step
    int steps = 20;          ///< K
    /// > 0: each element of ∇U is clipped to [-grad_clip, grad_clip] before the step
    /// (IGEBM clips at 0.01); 0 turns clipping off.
    double grad_clip = 0;
    ///@{
    /// Clamp the states to [clamp_min, clamp_max] after every step (e.g.\ images in [0, 1]);
    /// infinite bounds (the default) turn it off.
    double clamp_min = -std::numeric_limits<double>::infinity();
    double clamp_max = std::numeric_limits<double>::infinity();
    ///@}
    bool parallel_chains = false;  ///< one graph per thread on groups of chains: see for_chain_groups
};

/// Energy and gradient summaries of one sgld call.
struct SgldStats {
    double mean_energy_start = 0;  ///< mean U over the chains before the first step
    double mean_energy_end = 0;    ///< and at the last evaluated point (before the last step)
    double mean_grad_norm = 0;     ///< mean over steps and chains of ||∇U(x_i)||
};

/// Runs K SGLD steps from the states x [N, ...] and returns the final states (x itself is
/// not modified). `stats`, when given, receives energy and gradient summaries.
template <Real T>
Tensor<T> sgld(const EnergyArg<T>& energy, const Tensor<T>& x, const SgldOptions& o, Generator& gen,
               SgldStats* stats = nullptr) {
    detail::check_states(x, "sgld", "the chain states");
    EMBER_CHECK(o.step_size > 0 && std::isfinite(o.step_size), "sgld", "step_size must be positive and finite, got ",
                o.step_size);
    EMBER_CHECK(o.noise >= 0 && std::isfinite(o.noise), "sgld", "noise must be >= 0 and finite, got ", o.noise);
    EMBER_CHECK(o.steps >= 0, "sgld", "steps must be >= 0, got ", o.steps);
    EMBER_CHECK(o.grad_clip >= 0, "sgld", "grad_clip must be >= 0 (0 turns it off), got ", o.grad_clip);
    EMBER_CHECK(o.clamp_min < o.clamp_max, "sgld", "clamp_min must be below clamp_max, got ", o.clamp_min, " and ",
                o.clamp_max);
    const bool clamp = std::isfinite(o.clamp_min) || std::isfinite(o.clamp_max);
    const double lo = o.clamp_min, hi = o.clamp_max, c = o.grad_clip;
    const T alpha = static_cast<T>(o.step_size), sigma = static_cast<T>(o.noise);

    Tensor<T> cur = clamp ? Tensor<T>(ember::clamp(x, lo, hi)) : x.contiguous().clone();
    const Index n = cur.dim(0), per_chain = cur.numel() / n;
    Tensor<T> energies = Tensor<T>::empty(Shape{n});
    Eigen::VectorXd grad_sq_norms(stats ? n : 0);
    double grad_norm_sum = 0;
    const ConstantWeights constant;  // the energy is fixed for the K steps: pack its weights once
    for (int k = 0; k < o.steps; ++k) {
        // Each group of chains moves as soon as its energy and gradient are known, on the
        // thread that computed them, by its own part of one draw of noise for all chains:
        // the chains are the same for every thread count.
        const std::uint64_t noise_at = gen.offset();
        Index first_bad = -1;
        std::mutex bad_mutex;
        for_chain_groups(energy, cur, "sgld", o.parallel_chains, [&](Index begin, Index end, const EnergyGrad<T>& part) {
            if (const Index bad = detail::first_nonfinite_chain(part); bad >= 0) {
                const std::lock_guard lock(bad_mutex);
                if (first_bad < 0 || begin + bad < first_bad) first_bad = begin + bad, energies.data()[begin + bad] = part.energy.data()[bad];
                return;
            }
            std::copy_n(part.energy.data(), end - begin, energies.data() + begin);
            if (stats) grad_sq_norms.segment(begin, end - begin) = detail::row_sq_norms(part.grad);
            const Tensor<T> chains = cur.slice(0, begin, end);  // updated in place: only this group reads them
            Tensor<T> xi = Tensor<T>::empty(part.grad.shape());
            normal_elements(gen, noise_at, begin * per_chain, end * per_chain, T(0), T(1), xi.data());
            if (c > 0) assign(chains, chains - alpha * ember::clamp(part.grad, -c, c) + sigma * xi);
            else assign(chains, chains - alpha * part.grad + sigma * xi);
            if (clamp) assign(chains, ember::clamp(chains, lo, hi));
        });
        if (first_bad >= 0) detail::fail_nonfinite(first_bad, energies.data()[first_bad], "sgld", "during SGLD");
        gen.set_offset(noise_at + static_cast<std::uint64_t>((cur.numel() + 1) / 2));
        const double mean_u = detail::mean(energies);
        if (k == 0 && stats) stats->mean_energy_start = mean_u;
        if (stats) {
            stats->mean_energy_end = mean_u;
            grad_norm_sum += grad_sq_norms.array().sqrt().mean();
        }
    }
    if (stats && o.steps > 0) stats->mean_grad_norm = grad_norm_sum / o.steps;
    return cur;
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_SGLD_INSTANCES(X, T) \
    X template Tensor<T> sgld<T>(const EnergyFn<T>&, const Tensor<T>&, const SgldOptions&, Generator&, SgldStats*);
EMBER_EXTERN_INSTANCES(EMBER_SGLD_INSTANCES)

}  // namespace ember::sample
