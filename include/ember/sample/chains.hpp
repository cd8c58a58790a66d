#pragma once
/// \file
/// The part every Markov-chain sampler shares: N independent chains advanced together in
/// one batch, their current energies and gradients (kept between steps, so each step
/// evaluates the energy only at new points), a seeded random stream, the step size, warm-up
/// with step-size adaptation, and the statistics returned by each call.
///
///     sample::Mala<float> mala(energy, initial_states, {.step_size = 0.05, .seed = 1});
///     mala.warmup(500);                          // adapts the step toward 0.574 acceptance
///     auto stats = mala.run(1000, [&](const Tensor<float>& x, std::int64_t t) { ... });
///     stats.acceptance_rate, stats.step_size, mala.state()
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/ops/packed_weights.hpp"
#include "ember/sample/adapt.hpp"
#include "ember/sample/energy.hpp"

namespace ember::sample {

/// What one call to warmup() or run() did.
struct ChainStats {
    std::vector<double> acceptance;  ///< per chain: share of its proposals accepted (1 for ULA)
    double acceptance_rate = 0;      ///< over all chains and steps of the call
    double mean_accept_prob = 0;     ///< mean over chains and steps of min(1, Metropolis ratio)
    double mean_energy = 0;          ///< mean U over the chains at the end of the call
    double step_size = 0;            ///< the step in use at the end (fixed after warm-up)
    /// Steps made in the call.
    std::int64_t steps = 0;
    std::int64_t nonfinite = 0;  ///< proposals whose energy or gradient was NaN/Inf (rejected)
};

/// The accept decisions of one transition of N chains.
struct Transition {
    std::vector<double> prob;    ///< min(1, r) per chain (1 without an accept step)
    std::vector<char> accepted;  ///< per chain
    /// Proposals whose energy or gradient was NaN/Inf (rejected).
    std::int64_t nonfinite = 0;
    /// Mean of prob over the chains.
    double mean_prob() const {
        double s = 0;
        for (double p : prob) s += p;
        return s / static_cast<double>(prob.size());
    }
};

/// Metropolis decisions for N chains: chain i accepts its proposal with probability
/// min(1, exp(log_ratio[i])), one uniform from `gen` per chain. A proposal whose energy or
/// gradient is not finite, or whose ratio is NaN, is rejected (a divergent trajectory):
/// counted in `nonfinite`, never accepted.
template <Real T>
Transition metropolis_decisions(const EnergyGrad<T>& at_proposal, const Tensor<double>& log_ratio, Generator& gen) {
    const Index n = at_proposal.energy.numel();
    EMBER_CHECK(log_ratio.numel() == n, "metropolis_decisions", "expected ", n, " log ratios, got ", log_ratio.numel());
    Transition s;
    s.prob.assign(static_cast<std::size_t>(n), 0.0);
    s.accepted.assign(static_cast<std::size_t>(n), 0);
    const Tensor<double> u = uniform<double>(Shape{n}, gen);
    const auto g = detail::rows(at_proposal.grad);
    for (Index i = 0; i < n; ++i) {
        const std::size_t k = static_cast<std::size_t>(i);
        const double lr = log_ratio.data()[i];
        if (!std::isfinite(at_proposal.energy.data()[i]) || !g.row(i).allFinite() || std::isnan(lr)) {
            ++s.nonfinite;
            continue;
        }
        s.prob[k] = lr >= 0 ? 1.0 : std::exp(lr);
        s.accepted[k] = std::log(u.data()[i]) < lr;
    }
    return s;
}

/// The base of the samplers: N chains advanced together in one batch, their energies and
/// gradients, a random stream, the step size and warm-up with adaptation (see the file
/// description).
template <Real T>
class Chains {
public:
    /// Called after every step of run() with the chain states and the step's index.
    using Observer = std::function<void(const Tensor<T>& states, std::int64_t step)>;

    virtual ~Chains() = default;
    Chains(const Chains&) = delete;
    Chains& operator=(const Chains&) = delete;

    /// Advances every chain `steps` times with a fixed step size. The energy's linear weights
    /// are packed for the matrix kernel once per call (ConstantWeights): they must not be
    /// written during the call, which a fixed target implies.
    ChainStats run(std::int64_t steps, const Observer& observe = {}) {
        EMBER_CHECK(steps >= 0, name_, "number of steps must be >= 0, got ", steps);
        const ConstantWeights constant;
        Tally tally(num_chains());
        for (std::int64_t t = 0; t < steps; ++t) {
            tally.add(step_once());
            if (observe) observe(x_, t);
        }
        return tally.stats(*this);
    }

    /// Burn-in that also adapts the step size by dual averaging toward the target acceptance
    /// (samplers without an accept step, like ULA, only burn in). Ends with the step fixed
    /// at the averaged value.
    ChainStats warmup(std::int64_t steps, AdaptOptions adapt = {}) {
        EMBER_CHECK(steps >= 0, name_, "number of warm-up steps must be >= 0, got ", steps);
        if (!adapts()) return run(steps);
        if (std::isnan(adapt.target_accept)) adapt.target_accept = default_target();
        const ConstantWeights constant;
        // The averaging restarts from its current estimate after 1/8, 1/4 and 1/2 of the
        // warm-up, so that the far-off first iterates (the initial step can be wrong by
        // orders of magnitude) stop biasing it; the last half settles the step.
        DualAveraging da(step_, adapt.target_accept, adapt);
        Tally tally(num_chains());
        for (std::int64_t t = 0; t < steps; ++t) {
            if (steps >= 64 && (t == steps / 8 || t == steps / 4 || t == steps / 2)) {
                step_ = da.final_step();
                da = DualAveraging(step_, adapt.target_accept, adapt, 1.0);
            }
            const Step s = step_once();
            tally.add(s);
            step_ = da.update(s.mean_prob());
        }
        step_ = da.final_step();
        return tally.stats(*this);
    }

    /// The current chain states [N, ...].
    const Tensor<T>& state() const { return x_; }
    const Tensor<T>& energies() const { return current_.energy; }  ///< U at state(), [N]
    const Tensor<T>& gradients() const { return current_.grad; }   ///< ∇U at state()
    /// Number of chains N.
    Index num_chains() const { return x_.dim(0); }
    /// The current step size.
    double step_size() const { return step_; }
    /// Sets the step size (positive and finite).
    void set_step_size(double step) {
        EMBER_CHECK(step > 0 && std::isfinite(step), name_, "step size must be positive and finite, got ", step);
        step_ = step;
    }
    /// Replaces the chain states (same shape), e.g.\ to restart from new points.
    void set_state(const Tensor<T>& x) {
        EMBER_CHECK(x.defined() && x.shape() == x_.shape(), name_, "new states must have shape ", x_.shape().str(),
                    ", got ", x.defined() ? x.shape().str() : std::string("an undefined tensor"));
        x_ = x.contiguous().clone();
        evaluate_current();
    }
    /// The random stream of the proposals and accept steps (checkpoints save its offset).
    Generator& generator() { return gen_; }
    /// The sampler's name, e.g.\ "MALA", as error messages use it.
    const char* name() const { return name_; }

protected:
    /// The result of one transition of all chains.
    using Step = Transition;

    /// Chains of sampler `name` on `energy`, started at the rows of `initial` with step `step`
    /// and random stream Generator(seed); `parallel_chains` evaluates groups of chains on
    /// separate threads.
    Chains(const char* name, EnergyFn<T> energy, const Tensor<T>& initial, double step, std::uint64_t seed,
           bool parallel_chains)
        : name_(name), energy_(std::move(energy)), gen_(seed), parallel_chains_(parallel_chains) {
        detail::check_states(initial, name, "the initial chain states");
        EMBER_CHECK(static_cast<bool>(energy_), name, "the energy function is empty");
        set_step_size(step);
        x_ = initial.contiguous().clone();
        evaluate_current();
    }

    /// Advances every chain once.
    virtual Step step_once() = 0;
    /// Whether warmup() adapts the step size (false for samplers without an accept step).
    virtual bool adapts() const { return true; }
    /// The target acceptance of warmup() when AdaptOptions::target_accept is NaN.
    virtual double default_target() const = 0;

    /// Energies and gradients at states `x` [N, ...].
    EnergyGrad<T> evaluate(const Tensor<T>& x) const { return energy_and_grad(energy_, x, name_, parallel_chains_); }

    /// Metropolis accept/reject per chain: chain i moves to row i of `proposal` with
    /// probability min(1, exp(log_ratio[i])). A proposal whose energy or gradient is not
    /// finite is rejected (a divergent trajectory), never propagated.
    Step metropolis(const Tensor<T>& proposal, const EnergyGrad<T>& at_proposal, const Tensor<double>& log_ratio) {
        Step s = metropolis_decisions(at_proposal, log_ratio, gen_);
        for (Index i = 0; i < num_chains(); ++i)
            if (s.accepted[static_cast<std::size_t>(i)]) {
                detail::copy_row(proposal, x_, i);
                detail::copy_row(at_proposal.grad, current_.grad, i);
                current_.energy.data()[i] = at_proposal.energy.data()[i];
            }
        return s;
    }

    /// Moves every chain to `next` (no accept step); its energy must be finite everywhere.
    Step move_all(Tensor<T> next, EnergyGrad<T> at_next) {
        detail::check_finite(at_next, name_, "after a step");
        x_ = std::move(next);
        current_ = std::move(at_next);
        Step s;
        s.prob.assign(static_cast<std::size_t>(num_chains()), 1.0);
        s.accepted.assign(static_cast<std::size_t>(num_chains()), 1);
        return s;
    }

    /// The sampler's name.
    const char* name_;
    /// The energy U.
    EnergyFn<T> energy_;
    /// The random stream.
    Generator gen_;
    /// Whether groups of chains are evaluated on separate threads.
    bool parallel_chains_;
    /// The step size.
    double step_ = 0;
    /// The chain states [N, ...].
    Tensor<T> x_;
    /// Energies and gradients at x_.
    EnergyGrad<T> current_;

private:
    void evaluate_current() {
        current_ = evaluate(x_);
        detail::check_finite(current_, name_, "at the initial states");
    }

    struct Tally {
        explicit Tally(Index n) : accepted(static_cast<std::size_t>(n), 0) {}
        void add(const Step& s) {
            for (std::size_t i = 0; i < s.prob.size(); ++i) {
                accepted[i] += s.accepted[i];
                prob_sum += s.prob[i];
            }
            nonfinite += s.nonfinite;
            ++steps;
        }
        ChainStats stats(const Chains& c) const {
            ChainStats out;
            out.steps = steps;
            out.step_size = c.step_;
            out.nonfinite = nonfinite;
            const double n = static_cast<double>(accepted.size());
            out.acceptance.resize(accepted.size(), 0.0);
            double total = 0;
            for (std::size_t i = 0; i < accepted.size(); ++i) {
                total += static_cast<double>(accepted[i]);
                if (steps > 0) out.acceptance[i] = static_cast<double>(accepted[i]) / static_cast<double>(steps);
            }
            if (steps > 0) {
                out.acceptance_rate = total / (n * static_cast<double>(steps));
                out.mean_accept_prob = prob_sum / (n * static_cast<double>(steps));
            }
            out.mean_energy = detail::mean(c.current_.energy);
            return out;
        }
        std::vector<std::int64_t> accepted;
        double prob_sum = 0;
        std::int64_t nonfinite = 0, steps = 0;
    };
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CHAINS_INSTANCES(X, T) \
    X template Transition metropolis_decisions<T>(const EnergyGrad<T>&, const Tensor<double>&, Generator&); \
    X template class Chains<T>;
EMBER_EXTERN_INSTANCES(EMBER_CHAINS_INSTANCES)

}  // namespace ember::sample
