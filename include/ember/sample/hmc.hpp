#pragma once
/// \file
/// Hamiltonian Monte Carlo (Duane et al.\ 1987; Neal 2011) with unit mass, all chains in one
/// batch. Each transition draws a momentum p ~ N(0, I), follows the Hamiltonian
/// H(x, p) = U(x) + ½||p||² for L leapfrog steps of size ε,
///
///     p ← p - (ε/2)∇U(x);  then L times: x ← x + ε p,  p ← p - ε∇U(x) (ε/2 on the last),
/// and accepts the end point per chain with probability min(1, exp(H(x, p) - H(x', p'))).
/// Leapfrog is volume-preserving and reversible, so this correction makes the target
/// exactly stationary; the energy error grows with ε, not with L, so long trajectories
/// move far at a good acceptance. Warm-up adapts ε toward an acceptance of 0.65 (optimal
/// as the dimension grows, Beskos et al. 2013; targets up to 0.8 trade speed for
/// robustness). A trajectory that meets a NaN or infinite energy is rejected.
///
/// Cost: L energy-and-gradient evaluations per transition (the gradient at the start is
/// kept from the previous one).
#include <cmath>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/sample/chains.hpp"

namespace ember::sample {

/// Settings of Hmc.
struct HmcOptions {
    double step_size = 0.1;  ///< ε (warmup() adapts it)
    int leapfrog_steps = 10;  ///< L
    /// Seed of the sampler's random stream.
    std::uint64_t seed = 0;
    bool parallel_chains = false;  ///< one graph per thread on groups of chains: see for_chain_groups
};

/// Hamiltonian Monte Carlo with a leapfrog integrator and a Metropolis accept step (see the
/// file description).
template <Real T>
class Hmc : public Chains<T> {
public:
    /// HMC chains on `energy`, started at the rows of `initial`.
    Hmc(EnergyArg<T> energy, const Tensor<T>& initial, HmcOptions o = {})
        : Chains<T>("Hmc", std::move(energy), initial, o.step_size, o.seed, o.parallel_chains), leapfrog_steps_(o.leapfrog_steps) {
        EMBER_CHECK(o.leapfrog_steps >= 1, "Hmc", "leapfrog_steps must be >= 1, got ", o.leapfrog_steps);
    }
    /// L, the leapfrog steps per proposal.
    int leapfrog_steps() const { return leapfrog_steps_; }

protected:
    /// One HMC transition of every chain.
    typename Chains<T>::Step step_once() override {
        const T eps = static_cast<T>(this->step_);
        const Tensor<T> p0 = normal<T>(this->x_.shape(), this->gen_);
        Tensor<T> p(p0 - (eps / 2) * this->current_.grad);
        Tensor<T> x = this->x_;
        EnergyGrad<T> at;
        for (int l = 1; l <= leapfrog_steps_; ++l) {
            x = Tensor<T>(x + eps * p);
            at = this->evaluate(x);
            const T kick = l == leapfrog_steps_ ? eps / 2 : eps;
            p = Tensor<T>(p - kick * at.grad);
        }
        const Eigen::VectorXd k0 = detail::row_sq_norms(p0), k1 = detail::row_sq_norms(p);
        Tensor<double> log_ratio = Tensor<double>::empty(Shape{this->num_chains()});
        for (Index i = 0; i < this->num_chains(); ++i) {
            const double h0 = static_cast<double>(this->current_.energy.data()[i]) + 0.5 * k0[i];
            const double h1 = static_cast<double>(at.energy.data()[i]) + 0.5 * k1[i];
            log_ratio.data()[i] = std::isfinite(h1) ? h0 - h1 : -INFINITY;
        }
        return this->metropolis(x, at, log_ratio);
    }
    /// 0.65, the usual target acceptance of HMC.
    double default_target() const override { return 0.65; }

private:
    int leapfrog_steps_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_HMC_INSTANCES(X, T) \
    X template class Hmc<T>;
EMBER_EXTERN_INSTANCES(EMBER_HMC_INSTANCES)

}  // namespace ember::sample
