#pragma once
/// \file
/// Sampling in a generator's latent space (docs/math.md §7): the data-space energy U
/// pulled back through the generator G,
///
///     U_z(z) = U(G(z))            or, with the prior,   U_z(z) = U(G(z)) + ½||z||²,
/// so that exp(-U_z) ∝ exp(-U(G(z))) N(z; 0, I) when the prior is on. Any sampler runs on
/// U_z; z is low-dimensional and G's image is smooth, so chains mix far better than in
/// pixel space. Gradients reach z only: G's and U's parameters get no grad().
///
///     auto uz = sample::latent_energy<float>(std::ref(G), std::ref(D));
///     sample::Mala<float> mala(uz, normal<float>(Shape{64, 64}, gen));
#include <functional>

#include "ember/core/instances.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"
#include "ember/sample/energy.hpp"

namespace ember::sample {

/// The latent-space energy U_z(z) = U(generator(z)) (+ ½||z||² with `prior`), as an
/// EnergyFn for any sampler (see the file description).
template <Real T>
EnergyFn<T> latent_energy(std::function<Var<T>(const Var<T>&)> generator, EnergyFn<T> energy, bool prior = true) {
    EMBER_CHECK(static_cast<bool>(generator) && static_cast<bool>(energy), "latent_energy",
                "the generator and the energy must both be callable");
    return [generator = std::move(generator), energy = std::move(energy), prior](const Var<T>& z) -> Var<T> {
        detail::check_states(z.value(), "latent_energy", "the latent states");
        const Var<T> x = generator(z);
        EMBER_CHECK(x.defined() && x.rank() >= 1 && x.dim(0) == z.dim(0), "latent_energy", "the generator mapped ",
                    z.dim(0), " latent vectors to ", x.defined() ? x.shape().str() : std::string("nothing"),
                    "; expected one sample per latent vector");
        const Var<T> u = ember::energy::detail::call_per_sample(energy, x, "latent_energy");
        if (!prior) return u;
        const Var<T> flat = reshape(z, Shape{z.dim(0), -1});
        return Var<T>(u + T(0.5) * sum(Var<T>(flat * flat), 1));
    };
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_LATENT_INSTANCES(X, T) \
    X template EnergyFn<T> latent_energy<T>(std::function<Var<T>(const Var<T>&)>, EnergyFn<T>, bool);
EMBER_EXTERN_INSTANCES(EMBER_LATENT_INSTANCES)

}  // namespace ember::sample
