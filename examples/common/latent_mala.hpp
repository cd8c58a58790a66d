#pragma once
// Kumar et al.'s sampler for an energy model with a generator (MEG, docs/math.md §7), shared by
// examples/meg_mnist.cpp and examples/toy2d.cpp: MALA in latent space on
// U_z(z) = U(G(z)) + ½||z||² from the latent vectors z0, the step size adapted toward
// 0.574 acceptance during the warm-up only, then fixed. The caller freezes the networks'
// parameters (only ∇_z is needed) and puts G in evaluation mode if it has BatchNorm; the
// energy is then safe to evaluate on groups of chains in parallel threads
// (parallel_chains, docs/samplers.md).
#include <chrono>
#include <cstdio>
#include <functional>
#include <ember/ember.hpp>

namespace ember_examples {

struct LatentMala {
    ember::Tensor<float> z;                  // the chains' final states
    ember::sample::ChainStats warm, run;     // what the warm-up and the run did
    double u_start = 0;                      // mean U_z over the chains at z0
    double seconds = 0;
};

inline LatentMala latent_mala(std::function<ember::Var<float>(const ember::Var<float>&)> generator,
                              ember::sample::EnergyFn<float> energy, const ember::Tensor<float>& z0,
                              std::int64_t warmup, std::int64_t steps, std::uint64_t seed) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto uz = ember::sample::latent_energy<float>(std::move(generator), std::move(energy), /*prior=*/true);
    ember::sample::Mala<float> mala(uz, z0, {.step_size = 0.01, .seed = seed, .parallel_chains = true});
    LatentMala r;
    r.u_start = ember::sample::detail::mean(mala.energies());
    r.warm = mala.warmup(warmup);
    r.run = mala.run(steps);
    r.z = mala.state();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

// One line: chains, warm-up and run acceptance, the kept step size, the energy's change.
inline void print_latent_mala(const char* program, const LatentMala& r) {
    std::printf("%s: latent MALA on U(G(z)) + |z|^2/2 over %lld chains: %lld warm-up steps (acceptance %.3f), "
                "%lld steps at step size %.4g: acceptance rate %.3f, mean U_z %.3f -> %.3f (%.1f s)\n",
                program, static_cast<long long>(r.z.dim(0)), static_cast<long long>(r.warm.steps),
                r.warm.acceptance_rate, static_cast<long long>(r.run.steps), r.run.step_size, r.run.acceptance_rate,
                r.u_start, r.run.mean_energy, r.seconds);
}

}  // namespace ember_examples
