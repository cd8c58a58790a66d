#pragma once
/// \file
/// Annealed importance sampling (Neal 2001): the normaliser Z of an energy model
/// q(x) = exp(-U(x)) / Z, hence its log-likelihood, estimated with a batch of chains
/// (docs/samplers.md, "Partition functions").
///
/// A normalised base density p0 = exp(-U0) (a standard normal by default) is joined to the
/// target by the geometric path of energies
///
///     E_β(x) = (1 - β) U0(x) + β U(x),   0 = β_0 < β_1 < ... < β_K = 1.
///
/// Forward AIS draws x ~ p0 and, for k = 1..K, adds to the chain's log-weight
///
///     log w += (β_{k-1} - β_k) (U(x) - U0(x))        (= log f_k(x) - log f_{k-1}(x))
/// at its current state, then (for k < K) moves the state by a MALA or HMC transition that
/// leaves exp(-E_{β_k}) invariant. Each chain is an importance sample on the space of whole
/// trajectories, so E[w] = Z exactly, and log Ẑ = log mean(w) is, by Jensen's inequality,
/// a stochastic lower bound: E[log Ẑ] ≤ log Z.
///
/// Reverse AIS (the other half of bidirectional Monte Carlo, Grosse, Ghahramani and Adams
/// 2015) starts from exact samples of q and walks the path back to p0, with
///     log w' += (β_k - β_{k-1}) (U(x) - U0(x))  for k = K..1, a transition at β_{k-1} after
/// each step but the last; then E[w'] = 1/Z, and -log mean(w') is a stochastic upper bound.
/// The two together sandwich log Z; a wide gap says the path has too few stages.
///
/// Because E_β's energy and gradient are linear in U's and U0's, each state keeps U, ∇U,
/// U0 and ∇U0: every β gets its energy without evaluating the networks again, and the
/// weight update costs nothing. One MALA transition per stage costs one evaluation of U
/// (and of U0) with its gradient; an HMC transition costs L.
///
/// Schedule: the sigmoid schedule of Grosse, Maddison and Salakhutdinov (2013),
///     β̃_k = σ(δ (2k/K - 1)),  β_k = (β̃_k - β̃_0) / (β̃_K - β̃_0),  δ = 4,
/// which spends more stages near both ends than a linear one; or the user's own.
///
/// Step sizes: a warm-up pass of forward AIS (its weights discarded) adapts the log step by
/// a Robbins-Monro step toward the target acceptance at each stage, log ε ← log ε + (a_k -
/// a*), after 50 adapting transitions at β_1; the step reached at each stage is then fixed
/// for the estimating pass, whose transitions must not depend on its own chains' history.
///
/// Error bars: the delta-method standard error of log Ẑ, sd(w) / (√n mean(w)), and the
/// standard deviation of log Ẑ over bootstrap resamples of the chains; the effective sample
/// size of the weights, (Σw)² / Σw² (Kong 1992). With an ESS of a few percent of the chains
/// the mean is carried by a few weights, the estimate is most likely too low, and both
/// error bars understate the error.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <span>
#include <vector>

#include "ember/core/random.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"
#include "ember/sample/chains.hpp"
#include "ember/sample/hmc.hpp"
#include "ember/sample/langevin.hpp"

namespace ember::sample {

/// A normalised base density for AIS: its energy U0 = -log p0 (with the normalising
/// constant: p0 must integrate to 1) and exact draws from it.
template <Real T>
struct AisBase {
    /// U0(x) = -log p0(x) for states [N, ...], [N].
    EnergyFn<T> energy;
    /// n exact draws from p0, [n, ...].
    std::function<Tensor<T>(Index n, Generator& gen)> sample;
};

/// The base N(0, scale² I) over states of shape `state` (one chain's shape, e.g. {2} or
/// {1, 28, 28}).
template <Real T>
AisBase<T> normal_base(const Shape& state, double scale = 1) {
    EMBER_CHECK(state.numel() > 0, "normal_base", "the state shape must not be empty, got ", state.str());
    EMBER_CHECK(scale > 0 && std::isfinite(scale), "normal_base", "scale must be positive and finite, got ", scale);
    const Index d = state.numel();
    const T log_norm = static_cast<T>(0.5 * static_cast<double>(d) * std::log(2 * std::numbers::pi * scale * scale));
    const T half_precision = static_cast<T>(0.5 / (scale * scale));
    AisBase<T> base;
    base.energy = [d, log_norm, half_precision](const Var<T>& x) {
        return Var<T>(half_precision * sum(Var<T>(square(reshape(x, Shape{x.shape()[0], d}))), 1) + log_norm);
    };
    base.sample = [state, scale](Index n, Generator& gen) {
        std::vector<Index> dims{n};
        for (int i = 0; i < state.rank(); ++i) dims.push_back(state[i]);
        return normal<T>(Shape(std::span<const Index>(dims)), gen, T(0), static_cast<T>(scale));
    };
    return base;
}

/// The transition kernel AIS runs at each intermediate energy.
enum class AisKernel { mala, hmc };

/// Settings of ais() and reverse_ais().
struct AisOptions {
    /// K, the number of stages of the default sigmoid schedule (ignored when `betas` is set).
    int stages = 1000;
    /// The schedule 0 = β_0 < β_1 < ... < β_K = 1; empty: the sigmoid schedule with `stages`.
    std::vector<double> betas{};
    /// δ of the sigmoid schedule: larger puts more stages near β = 0 and β = 1.
    double sigmoid_delta = 4;
    AisKernel kernel = AisKernel::mala;  ///< the transition at each intermediate energy
    int transitions = 1;     ///< transitions per stage
    int leapfrog_steps = 5;  ///< L, for the HMC kernel
    /// The step size per stage, K entries (the step at β_k is step_sizes[k-1]): e.g. a
    /// previous result's step_sizes. Empty: the warm-up pass adapts them.
    std::vector<double> step_sizes{};
    double initial_step = 0.1;  ///< where the warm-up pass starts
    /// The acceptance the warm-up aims at; NaN: 0.574 for MALA, 0.65 for HMC.
    double target_accept = std::numeric_limits<double>::quiet_NaN();
    /// Chains of the warm-up pass; 0: as many as the estimating pass.
    Index warmup_chains = 0;
    int bootstrap = 1000;  ///< bootstrap resamples of the chains for stderr_bootstrap (0: none)
    std::uint64_t seed = 0;  ///< seed of the base draws, the proposals, accept steps and bootstrap
    bool parallel_chains = false;  ///< one graph per thread on groups of chains: see for_chain_groups
};

/// What ais() or reverse_ais() estimated.
struct AisResult {
    /// The log-weight of each chain: log w (forward), log w' (reverse).
    std::vector<double> log_weights;
    /// The estimate of log Z: log mean(w), a stochastic lower bound (forward), or
    /// -log mean(w'), a stochastic upper bound (reverse).
    double log_z = 0;
    double stderr_log_z = 0;  ///< delta method: sd(w) / (√n mean(w))
    double stderr_bootstrap = 0;  ///< sd of the estimate over bootstrap resamples of the chains
    double ess = 0;  ///< (Σw)² / Σw², between 1 and the number of chains
    bool reverse = false;  ///< which bound log_z is
    std::vector<double> betas;  ///< the schedule, K + 1 values
    std::vector<double> step_sizes;  ///< K: the step at β_1..β_K
    /// Mean acceptance probability of the transitions at each β_k, k = 1..K (NaN at β_K,
    /// where neither direction needs a transition).
    std::vector<double> acceptance;
};

/// The sigmoid schedule with K stages and steepness δ (see the file description).
inline std::vector<double> sigmoid_schedule(int stages, double delta = 4) {
    EMBER_CHECK(stages >= 1, "sigmoid_schedule", "number of stages must be >= 1, got ", stages);
    EMBER_CHECK(delta > 0 && std::isfinite(delta), "sigmoid_schedule", "delta must be positive and finite, got ", delta);
    auto sigma = [&](int k) { return 1 / (1 + std::exp(-delta * (2.0 * k / stages - 1))); };
    const double lo = sigma(0), hi = sigma(stages);
    std::vector<double> betas(static_cast<std::size_t>(stages) + 1);
    for (int k = 0; k <= stages; ++k) betas[static_cast<std::size_t>(k)] = (sigma(k) - lo) / (hi - lo);
    betas.front() = 0, betas.back() = 1;
    return betas;
}

/// Summary of importance log-weights: log mean(w), its standard errors and the weights' ESS.
struct LogWeightStats {
    double log_mean = 0;          ///< log mean(w)
    double stderr_delta = 0;      ///< its delta-method standard error, sd(w) / (√n mean(w))
    double stderr_bootstrap = 0;  ///< its standard deviation over bootstrap resamples
    double ess = 0;               ///< (Σw)² / Σw²
};

/// log mean(w) of log-weights `log_w`, with its delta-method standard error, the standard
/// deviation over `bootstrap` resamples (drawn from `gen`; 0 for none) and the ESS
/// (Σw)²/Σw². Weights of -∞ count as zero; all -∞ gives log mean -∞; NaN is an error.
inline LogWeightStats log_weight_stats(const std::vector<double>& log_w, int bootstrap, Generator& gen) {
    const std::size_t n = log_w.size();
    EMBER_CHECK(n >= 2, "log_weight_stats", "need at least 2 log-weights, got ", n);
    EMBER_CHECK(bootstrap >= 0, "log_weight_stats", "bootstrap resamples must be >= 0, got ", bootstrap);
    double top = -INFINITY;
    for (double v : log_w) {
        EMBER_CHECK(!std::isnan(v) && v != INFINITY, "log_weight_stats", "log-weights must not be NaN or +inf");
        top = std::max(top, v);
    }
    LogWeightStats s;
    if (top == -INFINITY) {
        s.log_mean = -INFINITY, s.stderr_delta = s.stderr_bootstrap = INFINITY;
        return s;
    }
    // Weights scaled by exp(-top), so that the largest is 1.
    std::vector<double> w(n);
    double sum = 0, sum_sq = 0;
    for (std::size_t i = 0; i < n; ++i) {
        w[i] = std::exp(log_w[i] - top);
        sum += w[i], sum_sq += w[i] * w[i];
    }
    const double dn = static_cast<double>(n), mean = sum / dn;
    s.log_mean = top + std::log(mean);
    const double var = std::max(0.0, (sum_sq - dn * mean * mean) / (dn - 1));
    s.stderr_delta = std::sqrt(var / dn) / mean;
    s.ess = sum * sum / sum_sq;
    if (bootstrap > 0) {
        double m = 0, m2 = 0;
        for (int b = 0; b < bootstrap; ++b) {
            const Tensor<double> u = uniform<double>(Shape{static_cast<Index>(n)}, gen);
            double total = 0;
            for (std::size_t i = 0; i < n; ++i) total += w[std::min(n - 1, static_cast<std::size_t>(u.data()[i] * dn))];
            // A resample of zero weights only has a log mean of -∞: leave it out of the spread.
            const double estimate = total > 0 ? std::log(total / dn) : std::log(mean);
            m += estimate, m2 += estimate * estimate;
        }
        m /= bootstrap;
        s.stderr_bootstrap = bootstrap > 1 ? std::sqrt(std::max(0.0, (m2 - bootstrap * m * m) / (bootstrap - 1))) : 0;
    }
    return s;
}

namespace detail {

// A batch of states with the target's and the base's energies and gradients at them.
template <Real T>
struct AnnealedStates {
    Tensor<T> x;
    EnergyGrad<T> target, base;
};

// The annealing path: U, U0, the schedule and the kernel (see the file description).
template <Real T>
class AnnealingPath {
public:
    AnnealingPath(const EnergyFn<T>& energy, const AisBase<T>& base, const AisOptions& o, const char* op)
        : energy_(energy), base_(base), o_(o), op_(op) {
        EMBER_CHECK(static_cast<bool>(energy), op, "the energy function is empty");
        EMBER_CHECK(static_cast<bool>(base.energy) && static_cast<bool>(base.sample), op,
                    "the base needs both an energy and a sampler");
        EMBER_CHECK(o.transitions >= 0, op, "transitions per stage must be >= 0, got ", o.transitions);
        EMBER_CHECK(o.leapfrog_steps >= 1, op, "leapfrog_steps must be >= 1, got ", o.leapfrog_steps);
        EMBER_CHECK(o.initial_step > 0 && std::isfinite(o.initial_step), op,
                    "initial_step must be positive and finite, got ", o.initial_step);
        EMBER_CHECK(std::isnan(o.target_accept) || (o.target_accept > 0 && o.target_accept < 1), op,
                    "target_accept must be in (0, 1), got ", o.target_accept);
        EMBER_CHECK(o.warmup_chains >= 0, op, "warmup_chains must be >= 0, got ", o.warmup_chains);
        betas_ = o.betas.empty() ? sigmoid_schedule(o.stages, o.sigmoid_delta) : o.betas;
        EMBER_CHECK(betas_.size() >= 2 && betas_.front() == 0 && betas_.back() == 1, op,
                    "the schedule must start at 0 and end at 1 with at least one stage, got ", betas_.size(),
                    " values");
        for (std::size_t k = 1; k < betas_.size(); ++k)
            EMBER_CHECK(betas_[k] > betas_[k - 1], op, "the schedule must increase strictly, but beta[", k,
                        "] = ", betas_[k], " follows ", betas_[k - 1]);
        EMBER_CHECK(o.step_sizes.empty() || o.step_sizes.size() == betas_.size() - 1, op, "expected ",
                    betas_.size() - 1, " step sizes (one per stage), got ", o.step_sizes.size());
        for (double e : o.step_sizes)
            EMBER_CHECK(e > 0 && std::isfinite(e), op, "step sizes must be positive and finite, got ", e);
        target_accept_ = std::isnan(o.target_accept) ? (o.kernel == AisKernel::mala ? 0.574 : 0.65) : o.target_accept;
    }

    int stages() const { return static_cast<int>(betas_.size()) - 1; }
    double beta(int k) const { return betas_[static_cast<std::size_t>(k)]; }
    const std::vector<double>& betas() const { return betas_; }

    AnnealedStates<T> evaluate(const Tensor<T>& x) const {
        AnnealedStates<T> s{x, energy_and_grad(energy_, x, op_, o_.parallel_chains),
                            energy_and_grad(base_.energy, x, op_, o_.parallel_chains)};
        check_energies(s.target, "target");
        check_energies(s.base, "base");
        return s;
    }

    // Adds (to - from) (U0 - U) at the current states to each chain's log-weight; -∞ where
    // U = +∞ (a state of zero density).
    void add_log_weights(const AnnealedStates<T>& s, double from, double to, std::vector<double>& log_w) const {
        for (std::size_t i = 0; i < log_w.size(); ++i) {
            const double u = static_cast<double>(s.target.energy.data()[i]);
            const double u0 = static_cast<double>(s.base.energy.data()[i]);
            log_w[i] += u == INFINITY ? -INFINITY : (to - from) * (u0 - u);
        }
    }

    // `transitions` moves of every chain leaving exp(-E_β) invariant, with step `step`;
    // returns the mean acceptance probability.
    double transition(AnnealedStates<T>& s, double beta, double step, int transitions, Generator& gen) const {
        double accept = 0;
        for (int t = 0; t < transitions; ++t) {
            const Transition d = o_.kernel == AisKernel::mala ? mala_move(s, beta, step, gen) : hmc_move(s, beta, step, gen);
            accept += d.mean_prob();
        }
        return transitions > 0 ? accept / transitions : std::numeric_limits<double>::quiet_NaN();
    }

    // The steps per stage: the user's, or adapted by a warm-up pass of forward AIS.
    std::vector<double> step_sizes(Index chains, Generator& gen) const {
        if (!o_.step_sizes.empty()) return o_.step_sizes;
        std::vector<double> steps(static_cast<std::size_t>(stages()), o_.initial_step);
        if (o_.transitions == 0) return steps;
        const Index n = o_.warmup_chains > 0 ? o_.warmup_chains : chains;
        AnnealedStates<T> s = evaluate(base_.sample(n, gen));
        double log_step = std::log(o_.initial_step);
        constexpr int kFirstStageMoves = 50;  // the initial step may be far off
        for (int k = 1; k <= stages(); ++k)
            for (int m = 0; m < (k == 1 ? kFirstStageMoves : 1); ++m) {
                const double a = transition(s, beta(k), std::exp(log_step), o_.transitions, gen);
                log_step += a - target_accept_;
                steps[static_cast<std::size_t>(k - 1)] = std::exp(log_step);
            }
        return steps;
    }

private:
    // E_β's energies and gradients from U's and U0's.
    EnergyGrad<T> at(const AnnealedStates<T>& s, double beta) const {
        const T b = static_cast<T>(beta), a = static_cast<T>(1 - beta);
        return {Tensor<T>(a * s.base.energy + b * s.target.energy), Tensor<T>(a * s.base.grad + b * s.target.grad)};
    }

    Transition mala_move(AnnealedStates<T>& s, double beta, double step, Generator& gen) const {
        const EnergyGrad<T> here = at(s, beta);
        const Tensor<T> proposal = langevin_proposal(s.x, here.grad, step, gen);
        const AnnealedStates<T> there = evaluate(proposal);
        const EnergyGrad<T> at_there = at(there, beta);
        return accept(s, there, metropolis_decisions(at_there, mala_log_accept_ratio(s.x, here, proposal, at_there, step), gen));
    }

    Transition hmc_move(AnnealedStates<T>& s, double beta, double step, Generator& gen) const {
        const EnergyGrad<T> here = at(s, beta);
        const Tensor<T> p0 = normal<T>(s.x.shape(), gen);
        AnnealedStates<T> there;
        const LeapfrogEnd<T> end = leapfrog(s.x, p0, here.grad, step, o_.leapfrog_steps, [&](const Tensor<T>& x) {
            there = evaluate(x);
            return at(there, beta);
        });
        const Tensor<double> log_ratio = hmc_log_accept_ratio(here.energy, p0, end.at.energy, end.p);
        return accept(s, there, metropolis_decisions(end.at, log_ratio, gen));
    }

    // Moves the accepted chains of `s` to their proposals.
    static Transition accept(AnnealedStates<T>& s, const AnnealedStates<T>& proposal, Transition d) {
        for (Index i = 0; i < s.x.dim(0); ++i)
            if (d.accepted[static_cast<std::size_t>(i)]) {
                copy_row(proposal.x, s.x, i);
                for (auto [from, to] : {std::pair{&proposal.target, &s.target}, std::pair{&proposal.base, &s.base}}) {
                    copy_row(from->grad, to->grad, i);
                    to->energy.data()[i] = from->energy.data()[i];
                }
            }
        return d;
    }

    // NaN anywhere, or an energy of -∞, has no meaning as a density: an error naming the chain.
    // +∞ is a state of zero density (its weight becomes 0; a proposal there is rejected).
    void check_energies(const EnergyGrad<T>& e, const char* which) const {
        for (Index i = 0; i < e.energy.numel(); ++i) {
            const T u = e.energy.data()[i];
            EMBER_CHECK(!std::isnan(u) && u != -std::numeric_limits<T>::infinity(), op_, "the ", which,
                        " energy is ", std::isnan(u) ? "NaN" : "-inf", " for chain ", i,
                        "; an energy must be finite or +inf");
        }
    }

    const EnergyFn<T>& energy_;
    const AisBase<T>& base_;
    const AisOptions& o_;
    const char* op_;
    std::vector<double> betas_;
    double target_accept_ = 0.574;
};

template <Real T>
AisResult finish(const detail::AnnealingPath<T>& path, std::vector<double> log_w, std::vector<double> steps,
                 std::vector<double> acceptance, bool reverse, const AisOptions& o, Generator& gen) {
    const LogWeightStats s = log_weight_stats(log_w, o.bootstrap, gen);
    AisResult r;
    r.log_weights = std::move(log_w);
    r.log_z = reverse ? -s.log_mean : s.log_mean;
    r.stderr_log_z = s.stderr_delta;
    r.stderr_bootstrap = s.stderr_bootstrap;
    r.ess = s.ess;
    r.reverse = reverse;
    r.betas = path.betas();
    r.step_sizes = std::move(steps);
    r.acceptance = std::move(acceptance);
    return r;
}

}  // namespace detail

/// Forward AIS with `chains` chains from `base` to exp(-energy) (see the file description):
/// a stochastic lower bound on log Z with its error bars.
///
///     auto r = sample::ais<double>(energy, 1000, sample::normal_base<double>(Shape{2}));
///     r.log_z, r.stderr_log_z, r.ess
template <Real T>
AisResult ais(const EnergyArg<T>& energy, Index chains, const AisBase<T>& base, const AisOptions& o = {}) {
    EMBER_CHECK(chains >= 2, "ais", "need at least 2 chains, got ", chains);
    const detail::AnnealingPath<T> path(energy, base, o, "ais");
    Generator gen(o.seed);
    std::vector<double> steps = path.step_sizes(chains, gen);
    detail::AnnealedStates<T> s = path.evaluate(base.sample(chains, gen));
    EMBER_CHECK(s.x.dim(0) == chains, "ais", "the base sampler returned ", s.x.dim(0), " draws for ", chains, " chains");
    std::vector<double> log_w(static_cast<std::size_t>(chains), 0.0);
    std::vector<double> acceptance(static_cast<std::size_t>(path.stages()), std::numeric_limits<double>::quiet_NaN());
    for (int k = 1; k <= path.stages(); ++k) {
        path.add_log_weights(s, path.beta(k - 1), path.beta(k), log_w);
        if (k < path.stages())  // the last transition would not change any weight
            acceptance[static_cast<std::size_t>(k - 1)] =
                path.transition(s, path.beta(k), steps[static_cast<std::size_t>(k - 1)], o.transitions, gen);
    }
    return detail::finish(path, std::move(log_w), std::move(steps), std::move(acceptance), false, o, gen);
}

/// Reverse AIS from exact samples of q = exp(-energy)/Z, one chain per row of
/// `exact_samples`, back to `base`: a stochastic upper bound on log Z (see the file
/// description). With the same schedule and steps as a forward run, the two sandwich log Z.
template <Real T>
AisResult reverse_ais(const EnergyArg<T>& energy, const Tensor<T>& exact_samples, const AisBase<T>& base,
                      const AisOptions& o = {}) {
    detail::check_states(exact_samples, "reverse_ais", "the exact samples");
    EMBER_CHECK(exact_samples.dim(0) >= 2, "reverse_ais", "need at least 2 exact samples, got ", exact_samples.dim(0));
    const detail::AnnealingPath<T> path(energy, base, o, "reverse_ais");
    Generator gen(o.seed);
    std::vector<double> steps = path.step_sizes(exact_samples.dim(0), gen);
    detail::AnnealedStates<T> s = path.evaluate(exact_samples.contiguous().clone());
    std::vector<double> log_w(static_cast<std::size_t>(exact_samples.dim(0)), 0.0);
    std::vector<double> acceptance(static_cast<std::size_t>(path.stages()), std::numeric_limits<double>::quiet_NaN());
    for (int k = path.stages(); k >= 1; --k) {
        // Reverse weights are the forward increments with the sign flipped.
        path.add_log_weights(s, path.beta(k), path.beta(k - 1), log_w);
        if (k > 1)
            acceptance[static_cast<std::size_t>(k - 2)] =
                path.transition(s, path.beta(k - 1), steps[static_cast<std::size_t>(k - 2)], o.transitions, gen);
    }
    return detail::finish(path, std::move(log_w), std::move(steps), std::move(acceptance), true, o, gen);
}

/// Log-likelihoods log q(x) = -U(x) - log Z of data points under an energy model, with
/// log Z from ais() (or a sandwich's bound).
struct LogLikelihood {
    std::vector<double> per_point;  ///< log q(x_i)
    double mean = 0;                ///< the mean over the points
    /// Standard error of the mean from the spread of the points (the data's sampling error).
    double stderr_points = 0;
    /// Standard error from the estimate of log Z, shared by every point.
    double stderr_log_z = 0;
};

/// log q(x_i) = -U(x_i) - log Z for the points x [N, ...] (see LogLikelihood).
template <Real T>
LogLikelihood log_likelihood(const EnergyArg<T>& energy, const Tensor<T>& x, const AisResult& log_z) {
    detail::check_states(x, "log_likelihood", "the data points");
    EMBER_CHECK(std::isfinite(log_z.log_z), "log_likelihood", "log Z must be finite, got ", log_z.log_z);
    Tensor<T> u;
    {
        NoGrad no_grad;
        u = ember::energy::detail::call_per_sample(energy, Var<T>(x), "log_likelihood").value().contiguous();
    }
    LogLikelihood out;
    const Index n = x.dim(0);
    out.per_point.resize(static_cast<std::size_t>(n));
    double sum = 0, sum_sq = 0;
    for (Index i = 0; i < n; ++i) {
        const double v = -static_cast<double>(u.data()[i]) - log_z.log_z;
        EMBER_CHECK(!std::isnan(v), "log_likelihood", "the energy is NaN at point ", i);
        out.per_point[static_cast<std::size_t>(i)] = v;
        sum += v, sum_sq += v * v;
    }
    const double dn = static_cast<double>(n);
    out.mean = sum / dn;
    out.stderr_points = n > 1 ? std::sqrt(std::max(0.0, (sum_sq - dn * out.mean * out.mean) / (dn - 1)) / dn) : 0;
    out.stderr_log_z = log_z.stderr_log_z;
    return out;
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_AIS_INSTANCES(X, T) \
    X template AisBase<T> normal_base<T>(const Shape&, double); \
    X template AisResult ais<T>(const EnergyFn<T>&, Index, const AisBase<T>&, const AisOptions&); \
    X template AisResult reverse_ais<T>(const EnergyFn<T>&, const Tensor<T>&, const AisBase<T>&, const AisOptions&); \
    X template LogLikelihood log_likelihood<T>(const EnergyFn<T>&, const Tensor<T>&, const AisResult&);
EMBER_EXTERN_INSTANCES(EMBER_AIS_INSTANCES)

}  // namespace ember::sample
