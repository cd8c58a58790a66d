#pragma once
/// \file
/// The Fréchet distance between Gaussian fits of two sets of feature rows: the distance
/// behind FID (Heusel et al.\ 2017), here on any features (ember's examples use a small MNIST
/// classifier's penultimate layer).
///
///     N(μ1, Σ1), N(μ2, Σ2) fitted to the rows of A [n1, d] and B [n2, d]:
///     d² = |μ1 - μ2|² + tr(Σ1 + Σ2 - 2 (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2})
///
/// (the squared 2-Wasserstein distance between the two Gaussians). The covariances are the
/// unbiased ones (divided by n - 1, as numpy.cov and the FID reference code). Everything is
/// accumulated in double.
///
/// The matrix square root is taken of symmetric positive semi-definite matrices only, by
/// eigendecomposition (Eigen's SelfAdjointEigenSolver), which is stable where scipy's sqrtm of
/// the non-symmetric Σ1 Σ2 is not: S = Σ1^{1/2} = V diag(√λ) Vᵀ, and
/// tr((S Σ2 S)^{1/2}) = Σ_i √μ_i over the eigenvalues μ_i of the symmetric S Σ2 S. Eigenvalues
/// that rounding makes slightly negative are taken as 0, and so is a slightly negative d².
///
///     ember::GaussianFit g1 = ember::fit_gaussian(features_a);   // [n, d], n >= 2
///     double d2 = ember::frechet_distance(g1, ember::fit_gaussian(features_b));
///     double same = ember::frechet_distance(features_a, features_b);  // the two steps at once
#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "ember/core/error.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/tensor.hpp"
#if EMBER_HEADER_DEFINITIONS
#include <Eigen/Eigenvalues>
#endif

namespace ember {

/// A Gaussian fitted to feature rows: mean, unbiased covariance and the number of rows.
struct GaussianFit {
    /// Mean of the rows, [d].
    Eigen::VectorXd mean;
    /// Unbiased covariance of the rows, [d, d].
    Eigen::MatrixXd cov;
    /// Number of rows fitted.
    Index n = 0;
};

/// Mean and unbiased covariance of the rows of `rows` ([n, d], n >= 2), in double.
template <Real T>
GaussianFit fit_gaussian(const Tensor<T>& rows) {
    EMBER_CHECK(rows.rank() == 2, "fit_gaussian", "expected feature rows [n, d], got shape ", rows.shape().str());
    const Index n = rows.dim(0), d = rows.dim(1);
    EMBER_CHECK(n >= 2, "fit_gaussian", "a covariance needs at least 2 rows, got ", n);
    EMBER_CHECK(d >= 1, "fit_gaussian", "feature rows have no columns, shape ", rows.shape().str());
    const Tensor<T> c = rows.contiguous();
    const Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> x(c.data(), n, d);
    const Eigen::MatrixXd xd = x.template cast<double>();
    GaussianFit g;
    g.n = n;
    g.mean = xd.colwise().mean().transpose();
    const Eigen::MatrixXd centred = xd.rowwise() - g.mean.transpose();
    g.cov = (centred.transpose() * centred) / static_cast<double>(n - 1);
    return g;
}

/// d² between N(a.mean, a.cov) and N(b.mean, b.cov).
EMBER_INLINE double frechet_distance(const GaussianFit& a, const GaussianFit& b);

/// d² between the Gaussian fits of the rows of `a` and `b` ([n1, d] and [n2, d]).
template <Real T>
double frechet_distance(const Tensor<T>& a, const Tensor<T>& b) {
    EMBER_CHECK(a.rank() == 2 && b.rank() == 2, "frechet_distance", "expected feature rows [n, d], got shapes ",
                a.shape().str(), " and ", b.shape().str());
    EMBER_CHECK(a.dim(1) == b.dim(1), "frechet_distance", "feature widths differ: ", a.shape().str(), " and ",
                b.shape().str());
    return frechet_distance(fit_gaussian(a), fit_gaussian(b));
}

#if EMBER_HEADER_DEFINITIONS
namespace detail {
// Eigenvalues of the symmetric matrix m (its symmetric part, against rounding), with the
// eigenvectors when asked.
inline Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> symmetric_eigen(const Eigen::MatrixXd& m, bool vectors) {
    const Eigen::MatrixXd sym = 0.5 * (m + m.transpose());
    Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(sym, vectors ? Eigen::ComputeEigenvectors : Eigen::EigenvaluesOnly);
    EMBER_CHECK(es.info() == Eigen::Success, "frechet_distance", "eigendecomposition did not converge (non-finite features?)");
    return es;
}
}  // namespace detail

EMBER_INLINE double frechet_distance(const GaussianFit& a, const GaussianFit& b) {
    EMBER_CHECK(a.mean.size() > 0 && a.cov.rows() == a.mean.size() && a.cov.cols() == a.mean.size() &&
                    b.cov.rows() == b.mean.size() && b.cov.cols() == b.mean.size(),
                "frechet_distance", "malformed Gaussian (mean and covariance sizes differ)");
    EMBER_CHECK(a.mean.size() == b.mean.size(), "frechet_distance", "feature widths differ: ", a.mean.size(), " and ",
                b.mean.size());
    EMBER_CHECK(a.mean.allFinite() && b.mean.allFinite() && a.cov.allFinite() && b.cov.allFinite(), "frechet_distance",
                "non-finite mean or covariance");
    // S = Σ1^{1/2} from Σ1's eigendecomposition (negative rounding noise clipped to 0).
    const auto e1 = detail::symmetric_eigen(a.cov, true);
    const Eigen::VectorXd root = e1.eigenvalues().cwiseMax(0.0).cwiseSqrt();
    const Eigen::MatrixXd S = e1.eigenvectors() * root.asDiagonal() * e1.eigenvectors().transpose();
    // tr((S Σ2 S)^{1/2}) = Σ √μ_i, μ_i the eigenvalues of the symmetric PSD matrix S Σ2 S.
    const auto e2 = detail::symmetric_eigen(S * b.cov * S, false);
    const double tr_sqrt = e2.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
    const double d2 = (a.mean - b.mean).squaredNorm() + a.cov.trace() + b.cov.trace() - 2.0 * tr_sqrt;
    return std::max(d2, 0.0);
}
#endif  // EMBER_HEADER_DEFINITIONS

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_FRECHET_INSTANCES(X, T) \
    X template GaussianFit fit_gaussian<T>(const Tensor<T>&); \
    X template double frechet_distance<T>(const Tensor<T>&, const Tensor<T>&);
EMBER_EXTERN_INSTANCES(EMBER_FRECHET_INSTANCES)

}  // namespace ember
