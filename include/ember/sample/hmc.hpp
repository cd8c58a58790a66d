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

/// Where a leapfrog trajectory ends: the state, the momentum, and U and ∇U at the state.
template <Real T>
struct LeapfrogEnd {
    Tensor<T> x;      ///< the states at the end
    Tensor<T> p;      ///< the momenta at the end
    EnergyGrad<T> at;  ///< U and ∇U at x
};

/// `steps` leapfrog steps of size `step` from states x with momenta p, where `grad` is ∇U(x)
/// (see the file description); `evaluate(x)` returns the EnergyGrad at a batch of states,
/// so the trajectory can follow any energy (a sampler's, or one of annealing's
/// intermediate energies).
template <Real T, class Evaluate>
LeapfrogEnd<T> leapfrog(const Tensor<T>& x, const Tensor<T>& p, const Tensor<T>& grad, double step, int steps,
                        Evaluate&& evaluate) {
    EMBER_CHECK(steps >= 1, "leapfrog", "number of steps must be >= 1, got ", steps);
    EMBER_CHECK(p.shape() == x.shape() && grad.shape() == x.shape(), "leapfrog",
                "states, momenta and gradients must share one shape, got ", x.shape().str(), ", ", p.shape().str(),
                " and ", grad.shape().str());
    const T eps = static_cast<T>(step);
    LeapfrogEnd<T> end{x, Tensor<T>(p - (eps / 2) * grad), {}};
    for (int l = 1; l <= steps; ++l) {
        end.x = Tensor<T>(end.x + eps * end.p);
        end.at = evaluate(end.x);
        const T kick = l == steps ? eps / 2 : eps;
        end.p = Tensor<T>(end.p - kick * end.at.grad);
    }
    return end;
}

/// log of HMC's acceptance ratio per chain, H(x, p) - H(x', p') with H = U + ½||p||², in
/// double; -∞ where the end energy is not finite (a divergent trajectory is rejected).
template <Real T>
Tensor<double> hmc_log_accept_ratio(const Tensor<T>& energy, const Tensor<T>& momentum, const Tensor<T>& end_energy,
                                    const Tensor<T>& end_momentum) {
    const Index n = energy.numel();
    EMBER_CHECK(end_energy.numel() == n && momentum.defined() && momentum.rank() >= 1 && momentum.dim(0) == n &&
                    end_momentum.shape() == momentum.shape(),
                "hmc_log_accept_ratio", "expected energies [N] and momenta [N, ...] of the same N, got ",
                energy.shape().str(), ", ", momentum.shape().str(), ", ", end_energy.shape().str(), ", ",
                end_momentum.shape().str());
    const Eigen::VectorXd k0 = detail::row_sq_norms(momentum.contiguous());
    const Eigen::VectorXd k1 = detail::row_sq_norms(end_momentum.contiguous());
    const Tensor<T> u0 = energy.contiguous(), u1 = end_energy.contiguous();
    Tensor<double> out = Tensor<double>::empty(Shape{n});
    for (Index i = 0; i < n; ++i) {
        const double h0 = static_cast<double>(u0.data()[i]) + 0.5 * k0[i];
        const double h1 = static_cast<double>(u1.data()[i]) + 0.5 * k1[i];
        out.data()[i] = std::isfinite(h1) ? h0 - h1 : -INFINITY;
    }
    return out;
}

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
        const Tensor<T> p0 = normal<T>(this->x_.shape(), this->gen_);
        const LeapfrogEnd<T> end = leapfrog(this->x_, p0, this->current_.grad, this->step_, leapfrog_steps_,
                                            [this](const Tensor<T>& x) { return this->evaluate(x); });
        const Tensor<double> log_ratio = hmc_log_accept_ratio(this->current_.energy, p0, end.at.energy, end.p);
        return this->metropolis(end.x, end.at, log_ratio);
    }
    /// 0.65, the usual target acceptance of HMC.
    double default_target() const override { return 0.65; }

private:
    int leapfrog_steps_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_HMC_INSTANCES(X, T) \
    X template Tensor<double> hmc_log_accept_ratio<T>(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&); \
    X template class Hmc<T>;
EMBER_EXTERN_INSTANCES(EMBER_HMC_INSTANCES)

}  // namespace ember::sample
