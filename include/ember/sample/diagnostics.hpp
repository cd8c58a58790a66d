#pragma once
/// \file
/// Convergence diagnostics on traces of a scalar quantity: `traces` is [M, S], M chains of
/// S draws each (after warm-up), e.g.\ one coordinate of every chain recorded at every step
/// of run() through its observer.
///
/// Effective sample size (the multi-chain estimator of Stan and BDA3 §11.5):
///
///     W = mean within-chain variance, var⁺ = (S-1)/S W + B/S (B/S = variance of the chain
///     means, 0 for one chain), ρ̂_t = 1 - (W - mean_m γ̂_m(t)) / var⁺ with γ̂_m(t) chain m's
///     autocovariance at lag t (divided by S); the ρ̂_t are summed in pairs up to the first
///     negative pair and made monotone (Geyer's initial monotone sequence), and
///     ESS = M S / τ̂,  τ̂ = -1 + 2 Σ_{t≤T} ρ̂_t + max(0, ρ̂_{T+1}), where T is the last lag kept
///     (ρ̂_{T+1}, the even half of the first negative pair, reduces the truncation bias).
/// For independent draws ESS ≈ M S; for an AR(1) chain with coefficient φ, ≈ M S (1-φ)/(1+φ).
///
/// Split R̂ (Gelman et al., BDA3 §11.4): each chain is cut in two halves, and with W and B of
/// the 2M half-chains of n = ⌊S/2⌋ draws, R̂ = sqrt(((n-1)/n W + B/n) / W). Near 1 when the
/// chains agree with each other and with their own two halves; above 1.01-1.1 means not
/// yet mixed.
#include "ember/core/instances.hpp"
#include "ember/core/tensor.hpp"

#if EMBER_HEADER_DEFINITIONS
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>
#endif

namespace ember::sample {

/// Effective sample size of the draws in traces [chains, draws] (at least 4 draws).
EMBER_INLINE double ess(const Tensor<double>& traces);
/// Split R̂ of traces [chains, draws] (at least 4 draws per chain).
EMBER_INLINE double rhat(const Tensor<double>& traces);

#if EMBER_HEADER_DEFINITIONS

namespace detail {
using TraceMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

inline TraceMatrix trace_matrix(const Tensor<double>& traces, const char* op, Index min_draws) {
    EMBER_CHECK(traces.defined() && traces.rank() == 2 && traces.dim(0) >= 1 && traces.dim(1) >= min_draws, op,
                "expected traces [chains, draws] with at least ", min_draws, " draws, got ",
                traces.defined() ? traces.shape().str() : std::string("an undefined tensor"));
    const Tensor<double> c = traces.contiguous();
    TraceMatrix m = Eigen::Map<const TraceMatrix>(c.data(), c.dim(0), c.dim(1));
    EMBER_CHECK(m.allFinite(), op, "the traces contain NaN or infinite values");
    return m;
}

// Mean within-chain (unbiased) variance W and the variance of the chain means B/n.
struct Variances {
    double within = 0, between_over_n = 0;
};
inline Variances variances(const TraceMatrix& m) {
    const Eigen::VectorXd means = m.rowwise().mean();
    const double n = static_cast<double>(m.cols());
    Variances v;
    v.within = ((m.colwise() - means).rowwise().squaredNorm() / (n - 1)).mean();
    if (m.rows() > 1) v.between_over_n = (means.array() - means.mean()).square().sum() / static_cast<double>(m.rows() - 1);
    return v;
}
}  // namespace detail

EMBER_INLINE double ess(const Tensor<double>& traces) {
    const detail::TraceMatrix m = detail::trace_matrix(traces, "ess", 4);
    const Index chains = m.rows(), n = m.cols();
    const detail::Variances v = detail::variances(m);
    EMBER_CHECK(v.within > 0, "ess", "the chains have zero variance (constant traces): no sample size to estimate");
    const double var_plus = v.within * static_cast<double>(n - 1) / static_cast<double>(n) + v.between_over_n;
    const detail::TraceMatrix centred = m.colwise() - m.rowwise().mean();
    // ρ̂_t from the chains' mean autocovariance at lag t (each divided by n, as BDA3's).
    auto rho = [&](Index t) {
        double acov = 0;
        for (Index c = 0; c < chains; ++c)
            acov += centred.row(c).head(n - t).dot(centred.row(c).tail(n - t)) / static_cast<double>(n);
        acov /= static_cast<double>(chains);
        return 1 - (v.within - acov) / var_plus;
    };
    std::vector<double> r{1.0, rho(1)};
    // Geyer's initial positive sequence: pairs (ρ̂_{t+1}, ρ̂_{t+2}) while their sum is positive.
    double even = 1, odd = r[1];
    bool truncated = false;  // stopped at a negative pair (rather than at the end of the trace)
    for (Index t = 1; t < n - 4 && even + odd > 0; t += 2) {
        even = rho(t + 1);
        odd = rho(t + 2);
        if (even + odd >= 0) {
            r.push_back(even);
            r.push_back(odd);
        } else {
            truncated = true;
        }
    }
    const std::size_t last = r.size() - 1;
    // Initial monotone sequence: no pair sum may exceed the one before it.
    for (std::size_t s = 1; s + 2 <= last; s += 2) {
        if (r[s + 1] + r[s + 2] > r[s - 1] + r[s]) {
            r[s + 1] = (r[s - 1] + r[s]) / 2;
            r[s + 2] = r[s + 1];
        }
    }
    double tau = -1;
    for (double x : r) tau += 2 * x;
    if (truncated && even > 0) tau += even;  // the even lag of the dropped pair, when positive
    const double total = static_cast<double>(chains * n);
    // Antithetic chains can make τ̂ tiny; cap ESS at N log10 N as Stan does.
    return std::min(total / tau, total * std::log10(total));
}

EMBER_INLINE double rhat(const Tensor<double>& traces) {
    const detail::TraceMatrix m = detail::trace_matrix(traces, "rhat", 4);
    const Index half = m.cols() / 2;
    detail::TraceMatrix split(2 * m.rows(), half);
    for (Index c = 0; c < m.rows(); ++c) {
        split.row(2 * c) = m.row(c).head(half);
        split.row(2 * c + 1) = m.row(c).segment(m.cols() - half, half);  // odd S drops the middle draw
    }
    const detail::Variances v = detail::variances(split);
    EMBER_CHECK(v.within > 0, "rhat", "the chains have zero within-chain variance (constant traces)");
    const double n = static_cast<double>(half);
    return std::sqrt(((n - 1) / n * v.within + v.between_over_n) / v.within);
}
#endif  // EMBER_HEADER_DEFINITIONS

}  // namespace ember::sample
