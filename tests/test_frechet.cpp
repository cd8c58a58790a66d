// The Fréchet distance between Gaussian fits of feature rows (include/ember/eval/frechet.hpp)
// against closed forms:
//  - identical sets: 0;
//  - diagonal covariances (they commute): d² = |μ1 - μ2|² + Σ_k (σ1k - σ2k)²;
//  - the same two Gaussians rotated together: the distance does not change;
//  - 2x2 covariances in general position, through tr √M = √(tr M + 2 √det M) for a 2x2
//    PSD matrix M, with M = Σ1^{1/2} Σ2 Σ1^{1/2} (tr M = tr Σ1Σ2, det M = det Σ1 det Σ2);
//  - symmetry d(A, B) = d(B, A) on random sets of different sizes.
// Sums of a few O(1) double terms: tolerances 1e-12 relative, except where a square root of
// a rounding-level eigenvalue enters (rank-deficient covariances: √1e-16 ~ 1e-8).
#include <doctest/doctest.h>

#include <cmath>
#include <ember/ember.hpp>
#include <ember/eval/frechet.hpp>
#include <numbers>

using namespace ember;

namespace {

bool close(double got, double want, double tol = 1e-12) { return std::fabs(got - want) <= tol * (1 + std::fabs(want)); }

GaussianFit gaussian(Eigen::VectorXd mean, Eigen::MatrixXd cov) {
    GaussianFit g;
    g.mean = std::move(mean);
    g.cov = std::move(cov);
    g.n = 100;
    return g;
}

Eigen::Matrix2d rotation(double theta) {
    Eigen::Matrix2d r;
    r << std::cos(theta), -std::sin(theta), std::sin(theta), std::cos(theta);
    return r;
}

}  // namespace

TEST_CASE("fit_gaussian: mean and unbiased covariance of the rows, in double") {
    // Rows (1,0), (-1,0), (0,1), (0,-1), shifted by (3, -2): mean (3,-2), covariance (2/3) I.
    Tensor<float> rows = Tensor<float>::empty(Shape{4, 2});
    const float v[] = {4, -2, 2, -2, 3, -1, 3, -3};
    std::copy(v, v + 8, rows.data());
    const GaussianFit g = fit_gaussian(rows);
    CHECK(g.n == 4);
    CHECK(close(g.mean(0), 3.0));
    CHECK(close(g.mean(1), -2.0));
    CHECK(close(g.cov(0, 0), 2.0 / 3.0));
    CHECK(close(g.cov(1, 1), 2.0 / 3.0));
    CHECK(std::fabs(g.cov(0, 1)) < 1e-15);
    CHECK(std::fabs(g.cov(1, 0)) < 1e-15);
}

TEST_CASE("frechet_distance of a set with itself is 0") {
    Generator gen(3);
    const Tensor<double> a = normal<double>(Shape{200, 8}, gen);
    CHECK(frechet_distance(a, a) < 1e-10);
    const Tensor<float> af = normal<float>(Shape{50, 4}, gen);
    CHECK(frechet_distance(af, af) < 1e-10);
    // Fewer rows than columns: a singular covariance, whose tiny eigenvalues' square roots
    // (~1e-8) are all that is left.
    const Tensor<double> thin = normal<double>(Shape{5, 20}, gen);
    CHECK(frechet_distance(thin, thin) < 1e-6);
}

TEST_CASE("frechet_distance with diagonal covariances: |μ1-μ2|² + Σ(σ1-σ2)²") {
    Eigen::VectorXd m1(3), m2(3), s1(3), s2(3);
    m1 << 1, 2, 3;
    m2 << 0, 2, 5;
    s1 << 1, 2, 0.5;
    s2 << 3, 2, 0.25;
    const GaussianFit a = gaussian(m1, s1.cwiseAbs2().asDiagonal().toDenseMatrix());
    const GaussianFit b = gaussian(m2, s2.cwiseAbs2().asDiagonal().toDenseMatrix());
    const double want = (m1 - m2).squaredNorm() + (s1 - s2).squaredNorm();  // 5 + 4.0625
    CHECK(close(frechet_distance(a, b), want));
    // A zero variance (a degenerate Gaussian) is fine too.
    Eigen::VectorXd s3(3);
    s3 << 0, 2, 1;
    const GaussianFit c = gaussian(m2, s3.cwiseAbs2().asDiagonal().toDenseMatrix());
    CHECK(close(frechet_distance(a, c), (m1 - m2).squaredNorm() + (s1 - s3).squaredNorm(), 1e-10));
}

TEST_CASE("frechet_distance is unchanged when both Gaussians are rotated together") {
    Eigen::Vector2d m1(1, -1), m2(-0.5, 2), s1(2, 0.5), s2(1, 1.5);
    const double want = (m1 - m2).squaredNorm() + (s1 - s2).squaredNorm();
    for (double theta : {0.3, 1.0, 2.5}) {
        const Eigen::Matrix2d r = rotation(theta);
        const GaussianFit a = gaussian(r * m1, r * s1.cwiseAbs2().asDiagonal() * r.transpose());
        const GaussianFit b = gaussian(r * m2, r * s2.cwiseAbs2().asDiagonal() * r.transpose());
        CHECK(close(frechet_distance(a, b), want));
    }
}

TEST_CASE("frechet_distance between a Gaussian and its rotated copy (non-commuting covariances)") {
    // Σ1 = diag(4, 1), Σ2 = R Σ1 Rᵀ: tr √(Σ1^{1/2} Σ2 Σ1^{1/2}) = √(tr Σ1Σ2 + 2 √(det Σ1 det Σ2)).
    const Eigen::Matrix2d s1 = Eigen::Vector2d(4, 1).asDiagonal();
    for (double theta : {std::numbers::pi / 6, std::numbers::pi / 2, 2.0}) {
        const Eigen::Matrix2d r = rotation(theta);
        const Eigen::Matrix2d s2 = r * s1 * r.transpose();
        const double tr_sqrt = std::sqrt((s1 * s2).trace() + 2 * std::sqrt(s1.determinant() * s2.determinant()));
        const Eigen::Vector2d m1(0, 1), m2(2, 0);
        const double want = (m1 - m2).squaredNorm() + s1.trace() + s2.trace() - 2 * tr_sqrt;
        CHECK(close(frechet_distance(gaussian(m1, s1), gaussian(m2, s2)), want));
    }
    // A quarter turn swaps the variances: d² = Σ(σ1 - σ2)² = (2-1)² + (1-2)² = 2.
    const Eigen::Matrix2d q = rotation(std::numbers::pi / 2);
    CHECK(close(frechet_distance(gaussian(Eigen::Vector2d::Zero(), s1), gaussian(Eigen::Vector2d::Zero(), q * s1 * q.transpose())),
                2.0));
}

TEST_CASE("frechet_distance is symmetric") {
    Generator gen(7);
    const Tensor<double> a = normal<double>(Shape{300, 6}, gen);
    const Tensor<double> b = Tensor<double>(normal<double>(Shape{150, 6}, gen) * 1.5 + 0.3);
    const double ab = frechet_distance(a, b), ba = frechet_distance(b, a);
    CHECK(ab > 0.1);
    CHECK(close(ab, ba, 1e-10));
}

TEST_CASE("frechet_distance: clear errors for too few rows and mismatched widths") {
    Generator gen(1);
    const Tensor<double> one = normal<double>(Shape{1, 4}, gen), four = normal<double>(Shape{10, 4}, gen);
    const Tensor<double> five = normal<double>(Shape{10, 5}, gen), flat = normal<double>(Shape{10}, gen);
    CHECK_THROWS_WITH_AS(fit_gaussian(one), doctest::Contains("at least 2 rows"), Error);
    CHECK_THROWS_WITH_AS(frechet_distance(four, five), doctest::Contains("feature widths differ"), Error);
    CHECK_THROWS_WITH_AS(frechet_distance(four, flat), doctest::Contains("expected feature rows"), Error);
    CHECK_THROWS_AS(frechet_distance(fit_gaussian(four), fit_gaussian(five)), Error);
    Tensor<double> bad = four.clone();
    bad.data()[3] = std::nan("");
    CHECK_THROWS_WITH_AS(frechet_distance(bad, four), doctest::Contains("non-finite"), Error);
}
