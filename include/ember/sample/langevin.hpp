#pragma once
/// \file
/// Langevin samplers (docs/math.md §7) for a density ∝ exp(-U(x)), all chains in one batch.
///
/// Unadjusted Langevin (ULA):  x' = x - (ε/2) ∇U(x) + √ε ξ,  ξ ~ N(0, I).
///
///     Every proposal is taken, so the chain is biased by O(ε): on N(0, σ²) its stationary
///     variance is σ² / (1 - ε/(4σ²)), not σ².
///
/// Metropolis-adjusted Langevin (MALA): the same proposal, accepted with probability
///
///     min(1, exp(U(x) - U(x') + log q(x | x') - log q(x' | x))),
///     log q(b | a) = -||b - a + (ε/2) ∇U(a)||² / (2ε),
/// independently per chain, which makes the target exactly stationary. The proposal is not
/// symmetric, so both q terms are needed (Su Jianlin's note on GANs from the energy viewpoint
/// writes q(z̃_t) in the ratio where q(z_t) belongs; docs/math.md §7).
/// Warm-up adapts ε toward an acceptance of 0.574, optimal for MALA in high dimension
/// (Roberts and Rosenthal 1998).
#include <cmath>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/sample/chains.hpp"

namespace ember::sample {

/// Settings of Langevin (ULA).
struct LangevinOptions {
    double step_size = 0.01;  ///< ε
    /// Seed of the sampler's random stream.
    std::uint64_t seed = 0;
    bool parallel_chains = false;  ///< one graph per thread on groups of chains: see for_chain_groups
};

/// Settings of Mala.
struct MalaOptions {
    double step_size = 0.01;  ///< ε (warmup() adapts it)
    /// Seed of the sampler's random stream.
    std::uint64_t seed = 0;
    bool parallel_chains = false;  ///< one graph per thread on groups of chains: see for_chain_groups
};

/// The Langevin proposal x' = x - (ε/2) ∇U(x) + √ε ξ for a given noise ξ (the shape of x):
/// to reproduce a proposal, check the acceptance maths, or couple chains through shared
/// noise. `grad` is ∇U(x) (energy_and_grad).
///
///     Tensor<double> xp = sample::langevin_proposal(x, at_x.grad, 0.01, xi);
template <Real T>
Tensor<T> langevin_proposal(const Tensor<T>& x, const Tensor<T>& grad, double step, const Tensor<T>& noise) {
    EMBER_CHECK(grad.shape() == x.shape() && noise.shape() == x.shape(), "langevin_proposal",
                "states, gradients and noise must share one shape, got ", x.shape().str(), ", ", grad.shape().str(),
                " and ", noise.shape().str());
    EMBER_CHECK(step > 0, "langevin_proposal", "step size must be positive, got ", step);
    return Tensor<T>(x - static_cast<T>(step / 2) * grad + static_cast<T>(std::sqrt(step)) * noise);
}
/// The same with ξ ~ N(0, I) drawn from `gen`, as the samplers do.
template <Real T>
Tensor<T> langevin_proposal(const Tensor<T>& x, const Tensor<T>& grad, double step, Generator& gen) {
    return langevin_proposal(x, grad, step, normal<T>(x.shape(), gen));
}

/// log of MALA's acceptance ratio for moving each chain from x to `proposal`, given the
/// energies and gradients at both: a Tensor<double> of shape [N], one per chain, computed
/// in double whatever T is:
///
///     U(x) - U(x') - ||x - x' + (ε/2)∇U(x')||²/(2ε) + ||x' - x + (ε/2)∇U(x)||²/(2ε).
template <Real T>
Tensor<double> mala_log_accept_ratio(const Tensor<T>& x, const EnergyGrad<T>& at_x, const Tensor<T>& proposal,
                                     const EnergyGrad<T>& at_proposal, double step) {
    EMBER_CHECK(x.shape() == proposal.shape() && at_x.grad.shape() == x.shape() &&
                    at_proposal.grad.shape() == x.shape(),
                "mala_log_accept_ratio", "states, proposals and gradients must share one shape, got ", x.shape().str(),
                ", ", proposal.shape().str(), ", ", at_x.grad.shape().str(), ", ", at_proposal.grad.shape().str());
    EMBER_CHECK(step > 0, "mala_log_accept_ratio", "step size must be positive, got ", step);
    // (contiguous() may copy: the copies must outlive the maps over them.)
    const Tensor<T> xc = x.contiguous(), pc = proposal.contiguous();
    const Tensor<T> gxc = at_x.grad.contiguous(), gpc = at_proposal.grad.contiguous();
    const auto a = detail::rows(xc).template cast<double>();
    const auto b = detail::rows(pc).template cast<double>();
    const auto ga = detail::rows(gxc).template cast<double>();
    const auto gb = detail::rows(gpc).template cast<double>();
    const Eigen::VectorXd forward = (b - a + (step / 2) * ga).rowwise().squaredNorm();   // for log q(x'|x)
    const Eigen::VectorXd backward = (a - b + (step / 2) * gb).rowwise().squaredNorm();  // for log q(x|x')
    Tensor<double> out = Tensor<double>::empty(Shape{x.dim(0)});
    for (Index i = 0; i < x.dim(0); ++i)
        out.data()[i] = static_cast<double>(at_x.energy.data()[i]) - static_cast<double>(at_proposal.energy.data()[i]) -
                        (backward[i] - forward[i]) / (2 * step);
    return out;
}

/// The same ratio computed from the energy function itself.
template <Real T>
Tensor<double> mala_log_accept_ratio(const EnergyArg<T>& energy, const Tensor<T>& x, const Tensor<T>& proposal,
                                     double step) {
    return mala_log_accept_ratio(x, energy_and_grad(energy, x, "mala_log_accept_ratio"), proposal,
                                 energy_and_grad(energy, proposal, "mala_log_accept_ratio"), step);
}

/// Unadjusted Langevin: fast and biased; use MALA when the bias matters. A state where the
/// energy or gradient is not finite stops with an error (there is no accept step to reject
/// it), naming the chain and suggesting a smaller step.
template <Real T>
class Langevin : public Chains<T> {
public:
    /// ULA chains on `energy`, started at the rows of `initial`.
    Langevin(EnergyArg<T> energy, const Tensor<T>& initial, LangevinOptions o = {})
        : Chains<T>("Langevin", std::move(energy), initial, o.step_size, o.seed, o.parallel_chains) {}

protected:
    /// One ULA move of every chain.
    typename Chains<T>::Step step_once() override {
        Tensor<T> next = langevin_proposal(this->x_, this->current_.grad, this->step_, this->gen_);
        EnergyGrad<T> at_next = this->evaluate(next);
        return this->move_all(std::move(next), std::move(at_next));
    }
    /// False: ULA has no accept step, so warmup() only burns in.
    bool adapts() const override { return false; }
    /// 1: every proposal is taken.
    double default_target() const override { return 1.0; }
};

/// Metropolis-adjusted Langevin (see the file description).
template <Real T>
class Mala : public Chains<T> {
public:
    /// MALA chains on `energy`, started at the rows of `initial`.
    Mala(EnergyArg<T> energy, const Tensor<T>& initial, MalaOptions o = {})
        : Chains<T>("Mala", std::move(energy), initial, o.step_size, o.seed, o.parallel_chains) {}

protected:
    /// One MALA transition of every chain.
    typename Chains<T>::Step step_once() override {
        const Tensor<T> proposal = langevin_proposal(this->x_, this->current_.grad, this->step_, this->gen_);
        const EnergyGrad<T> at_proposal = this->evaluate(proposal);
        const Tensor<double> log_ratio = mala_log_accept_ratio(this->x_, this->current_, proposal, at_proposal, this->step_);
        return this->metropolis(proposal, at_proposal, log_ratio);
    }
    /// 0.574, optimal for MALA in high dimension.
    double default_target() const override { return 0.574; }
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_LANGEVIN_INSTANCES(X, T) \
    X template Tensor<T> langevin_proposal<T>(const Tensor<T>&, const Tensor<T>&, double, Generator&); \
    X template Tensor<T> langevin_proposal<T>(const Tensor<T>&, const Tensor<T>&, double, const Tensor<T>&); \
    X template Tensor<double> mala_log_accept_ratio<T>(const Tensor<T>&, const EnergyGrad<T>&, const Tensor<T>&, const EnergyGrad<T>&, double); \
    X template Tensor<double> mala_log_accept_ratio<T>(const EnergyFn<T>&, const Tensor<T>&, const Tensor<T>&, double); \
    X template class Langevin<T>; \
    X template class Mala<T>;
EMBER_EXTERN_INSTANCES(EMBER_LANGEVIN_INSTANCES)

}  // namespace ember::sample
