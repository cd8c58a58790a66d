#pragma once
/// \file
/// Differential entropies for evaluating generators (docs/math.md §8), in nats:
///   * Gaussian closed forms H(N(μ, Σ)) = ½ log det(2πe Σ): diagonal (differentiable, any
///     batch shape) and full covariance (Cholesky through Eigen);
///   * the Kozachenko-Leonenko k-nearest-neighbour estimator for samples of an unknown
///     density (plain Tensor code: it is an evaluation metric, not a training loss).
#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "ember/autodiff/anomaly.hpp"
#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/threading.hpp"
#include "ember/ops/reduce.hpp"

namespace ember::info {

// ---- Gaussian closed forms ----------------------------------------------------------------

/// Entropy of N(μ, diag(σ²)) over the last axis of `variance` (σ_j², all > 0):
///
///     H = ½ Σ_j log(2πe σ_j²) = ½ Σ_j (log σ_j² + 1 + log 2π).
/// variance [d] gives a scalar, [B, d] one entropy per row [B]. Differentiable (for a VAE's
/// encoder, pass exp(log_var)). For N(0, I_d): (d/2) log(2πe) ≈ 1.4189·d.
template <Real T>
Var<T> gaussian_entropy_diag(const Var<T>& variance) {
    EMBER_CHECK(variance.defined() && variance.rank() >= 1 && variance.numel() > 0, "gaussian_entropy_diag",
                "expected variances [..., d] with d >= 1, got shape ", variance.defined() ? variance.shape().str() : "undefined");
    const Tensor<T> v = variance.value().contiguous();
    for (Index i = 0; i < v.numel(); ++i)
        EMBER_CHECK(v.data()[i] > 0 && std::isfinite(v.data()[i]), "gaussian_entropy_diag",
                    "variances must be positive and finite; element ", i, " of shape ", variance.shape().str(), " is ",
                    v.data()[i]);
    const T c = static_cast<T>(0.5 * (1 + std::log(2 * std::numbers::pi)));
    return sum(Var<T>(T(0.5) * log(variance) + c), -1);
}
/// gaussian_entropy_diag on a tensor of variances, without recording.
template <Real T>
Tensor<T> gaussian_entropy_diag(const Tensor<T>& variance) {
    return gaussian_entropy_diag(Var<T>(variance)).value();
}

/// Entropy of N(μ, Σ) for a full covariance Σ [d,d]:
///
///     H = ½ log det(2πe Σ) = (d/2)(1 + log 2π) + Σ_i log L_ii,  Σ = L Lᵀ (Cholesky, Eigen LLT).
/// Computed in double. Σ must be symmetric (to √ε of its largest entry; it is symmetrised
/// before factoring) and positive definite, else ember::Error says which.
template <Real T>
double gaussian_entropy(const Tensor<T>& covariance) {
    constexpr const char* op = "gaussian_entropy";
    const Shape& s = covariance.shape();
    EMBER_CHECK(s.rank() == 2 && s[0] == s[1] && s[0] >= 1, op, "expected a square covariance matrix [d,d], got shape ",
                s.str());
    const Index d = s[0];
    EMBER_CHECK(ember::detail::all_finite(covariance), op, "the covariance of shape ", s.str(), " has a non-finite entry");
    Eigen::MatrixXd m(d, d);
    double largest = 0;
    for (Index i = 0; i < d; ++i)
        for (Index j = 0; j < d; ++j) {
            m(i, j) = static_cast<double>(covariance.at({i, j}));
            largest = std::max(largest, std::fabs(m(i, j)));
        }
    const double tol = std::sqrt(std::numeric_limits<T>::epsilon()) * largest;
    for (Index i = 0; i < d; ++i)
        for (Index j = i + 1; j < d; ++j)
            EMBER_CHECK(std::fabs(m(i, j) - m(j, i)) <= tol, op, "the covariance is not symmetric: entry (", i, ",", j,
                        ") is ", m(i, j), " but (", j, ",", i, ") is ", m(j, i));
    const Eigen::MatrixXd sym = 0.5 * (m + m.transpose());
    const Eigen::LLT<Eigen::MatrixXd> llt(sym);
    bool ok = llt.info() == Eigen::Success;
    double log_det_half = 0;  // Σ log L_ii = ½ log det Σ
    if (ok) {
        const Eigen::MatrixXd L = llt.matrixL();
        for (Index i = 0; i < d; ++i) {
            ok = ok && L(i, i) > 0 && std::isfinite(L(i, i));
            log_det_half += std::log(L(i, i));
        }
    }
    EMBER_CHECK(ok, op, "the covariance [", d, ",", d,
                "] is not positive definite (its Cholesky factorisation failed), so N(μ, Σ) has no density; "
                "a sample covariance of fewer than d+1 points, or of points in a subspace, is singular");
    return 0.5 * static_cast<double>(d) * (1 + std::log(2 * std::numbers::pi)) + log_det_half;
}

// ---- Kozachenko-Leonenko k-nearest-neighbour estimator ---------------------------------------

/// ψ(n), the digamma function at a positive integer: -γ + Σ_{j<n} 1/j, by that sum for
/// n ≤ 64 and by the asymptotic series log n - 1/(2n) - 1/(12n²) + 1/(120n⁴) - 1/(252n⁶)
/// (error below 1/(240 n⁸) < 1e-16) beyond.
inline double digamma(Index n) {
    EMBER_CHECK(n >= 1, "digamma", "defined here for positive integers, got ", n);
    if (n <= 64) {
        double h = -0.57721566490153286061;  // -γ (Euler-Mascheroni)
        for (Index j = 1; j < n; ++j) h += 1.0 / static_cast<double>(j);
        return h;
    }
    const double x = static_cast<double>(n), x2 = 1 / (x * x);
    return std::log(x) - 0.5 / x - x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 / 252));
}

/// log V_d, V_d = π^{d/2} / Γ(d/2 + 1) the volume of the Euclidean unit ball (radius 1) in R^d.
inline double log_unit_ball_volume(Index d) {
    EMBER_CHECK(d >= 1, "log_unit_ball_volume", "dimension must be >= 1, got ", d);
    const double h = 0.5 * static_cast<double>(d);
    return h * std::log(std::numbers::pi) - std::lgamma(h + 1);
}

/// log ε_i for every sample, ε_i the Euclidean distance from x_i to its k-th nearest
/// neighbour among the other N-1 samples (brute force, O(N²d), threads over i; distances in
/// double). Throws if some ε_i = 0, i.e. x_i has k or more exact duplicates: the estimator
/// would give -inf, and duplicates mean the data are not from a density (quantised pixels,
/// a collapsed generator); deduplicate or add a small jitter first.
template <Real T>
std::vector<double> knn_log_distances(const Tensor<T>& samples, Index k = 1) {
    constexpr const char* op = "knn_entropy";
    const Shape& s = samples.shape();
    EMBER_CHECK(s.rank() == 2 && s[1] >= 1, op, "expected samples [N, d] (one row per point, d >= 1), got shape ", s.str());
    const Index N = s[0], d = s[1];
    EMBER_CHECK(k >= 1 && N > k, op, "needs k >= 1 and more than k points; got k = ", k, " and N = ", N);
    EMBER_CHECK(ember::detail::all_finite(samples), op, "the samples of shape ", s.str(), " contain a non-finite value");
    std::vector<double> x(static_cast<std::size_t>(N * d));
    {
        const Tensor<T> c = samples.contiguous();
        for (Index i = 0; i < N * d; ++i) x[static_cast<std::size_t>(i)] = static_cast<double>(c.data()[i]);
    }
    std::vector<double> out(static_cast<std::size_t>(N));
    // Chunks of rows per thread, each with its own buffer of squared distances.
    parallel_chunks(N, 64, 1, [&](std::int64_t b, std::int64_t e) {
        std::vector<double> dist(static_cast<std::size_t>(N - 1));
        for (std::int64_t i = b; i < e; ++i) {
            const double* xi = x.data() + i * d;
            std::size_t m = 0;
            for (Index j = 0; j < N; ++j) {
                if (j == i) continue;
                const double* xj = x.data() + j * d;
                double s2 = 0;
                for (Index c = 0; c < d; ++c) {
                    const double t = xi[c] - xj[c];
                    s2 += t * t;
                }
                dist[m++] = s2;
            }
            std::nth_element(dist.begin(), dist.begin() + (k - 1), dist.end());
            out[static_cast<std::size_t>(i)] = 0.5 * std::log(dist[static_cast<std::size_t>(k - 1)]);  // log √s2
        }
    });
    for (Index i = 0; i < N; ++i)
        EMBER_CHECK(std::isfinite(out[static_cast<std::size_t>(i)]), op, "point ", i, " has ", k,
                    " or more exact duplicates (its k-th nearest neighbour, k = ", k,
                    ", is at distance 0), so log ε = -inf; remove duplicate points or add a small jitter");
    return out;
}

/// Kozachenko-Leonenko estimate of the differential entropy (nats) of the density the rows
/// of `samples` [N, d] were drawn from:
///
///     Ĥ = ψ(N) - ψ(k) + log V_d + (d/N) Σ_i log ε_i,
/// ε_i the Euclidean DISTANCE (a radius, not 2× it) from x_i to its k-th nearest neighbour
/// and V_d the volume of the unit ball of radius 1 (log_unit_ball_volume). Kraskov et al.
/// (2004, eq. 20) write the same estimator with the diameter 2ε_i and c_d = V_d / 2^d; the
/// 2^d cancels. Why it works: N·V_d·ε_i^d·p(x_i) is approximately Gamma(k, 1), whose log has
/// mean ψ(k); ψ(N) instead of log N makes the uniform-density case exact in expectation.
/// Consistent for any k; the bias at finite N comes from the curvature of p over the
/// k-NN ball, O((k/N)^{2/d}); k > 1 lowers the variance (ψ'(k) per point) at the price of
/// that bias. Samples must be distinct (see knn_log_distances).
template <Real T>
double knn_entropy(const Tensor<T>& samples, Index k = 1) {
    const std::vector<double> log_eps = knn_log_distances(samples, k);
    const Index N = samples.dim(0), d = samples.dim(1);
    double mean_log = 0;
    for (double v : log_eps) mean_log += v;
    mean_log /= static_cast<double>(N);
    return digamma(N) - digamma(k) + log_unit_ball_volume(d) + static_cast<double>(d) * mean_log;
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_ENTROPY_INSTANCES(X, T) \
    X template Var<T> gaussian_entropy_diag<T>(const Var<T>&); \
    X template Tensor<T> gaussian_entropy_diag<T>(const Tensor<T>&); \
    X template double gaussian_entropy<T>(const Tensor<T>&); \
    X template std::vector<double> knn_log_distances<T>(const Tensor<T>&, Index); \
    X template double knn_entropy<T>(const Tensor<T>&, Index);
EMBER_EXTERN_INSTANCES(EMBER_ENTROPY_INSTANCES)

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS(gaussian_entropy_diag)

}  // namespace ember::info
