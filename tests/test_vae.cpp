// VAE maths (include/ember/info/vae.hpp; docs/math.md §5, §8).
//
// Closed forms are checked three ways: against a direct evaluation of the formula in
// scalar code, against Monte-Carlo averages, and against identities that hold exactly.
//
// Monte-Carlo tolerances. An average of N independent draws of f has standard error
// SE = s/√N, s the sample standard deviation (computed in the test from the same draws).
// The estimate lies within 5·SE of its expectation except with probability 6e-7 (normal
// tail, N ≥ 20000 makes the CLT accurate for these light-tailed f), so a 5·SE check fails
// only when the formula is wrong by more than 5·SE. Every such test also checks that 5·SE
// is small against the quantity tested, so the check could fail (a factor-½ slip, a
// missing term). Seeds are fixed: the runs are reproducible.
//
// Exact tolerances. Double-precision evaluation of a few dozen operations on O(1)-O(100)
// values has rounding errors of a few ulp of the largest intermediate, ~1e-14 absolute;
// checks of exact identities use 1e-12 relative (or 1e-10 absolute where values reach
// ~10² and pass through exp/log and a Cholesky solve), 100× or more above rounding.
#include <doctest/doctest.h>

#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <cmath>
#include <ember/ember.hpp>
#include <ember/info/vae.hpp>
#include <numbers>
#include <string>
#include <vector>

using namespace ember;
using namespace ember::info;  // the VAE terms

namespace {

using V = Var<double>;
using Td = Tensor<double>;

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// Mean, sample standard deviation and standard error of the mean of column b of v [N, B].
struct Stats {
    double mean = 0, sd = 0, se = 0;
};
Stats column_stats(const Td& v, Index b) {
    const Td c = v.contiguous();
    const Index n = c.dim(0), B = c.dim(1);
    double m = 0;
    for (Index i = 0; i < n; ++i) m += c.data()[i * B + b];
    m /= static_cast<double>(n);
    double ss = 0;
    for (Index i = 0; i < n; ++i) ss += (c.data()[i * B + b] - m) * (c.data()[i * B + b] - m);
    Stats s;
    s.mean = m;
    s.sd = std::sqrt(ss / static_cast<double>(n - 1));
    s.se = s.sd / std::sqrt(static_cast<double>(n));
    return s;
}

double rel_err(double got, double want) { return std::fabs(got - want) / std::max(1.0, std::fabs(want)); }

double max_rel_err(const Td& got, const std::vector<double>& want) {
    REQUIRE(got.numel() == static_cast<Index>(want.size()));
    double worst = 0;
    for (Index i = 0; i < got.numel(); ++i) worst = std::max(worst, rel_err(got.flat(i), want[static_cast<std::size_t>(i)]));
    return worst;
}

Eigen::MatrixXd to_matrix(const Td& t) {
    Eigen::MatrixXd m(t.dim(0), t.dim(1));
    for (Index i = 0; i < t.dim(0); ++i)
        for (Index j = 0; j < t.dim(1); ++j) m(i, j) = t.at({i, j});
    return m;
}
Td from_matrix(const Eigen::MatrixXd& m) {
    Td t = Td::empty({m.rows(), m.cols()});
    for (Index i = 0; i < m.rows(); ++i)
        for (Index j = 0; j < m.cols(); ++j) t.data()[i * m.cols() + j] = m(i, j);
    return t;
}

// A random symmetric positive definite matrix A Aᵀ + shift·I.
Eigen::MatrixXd random_spd(Index d, Generator& gen, double shift) {
    const Eigen::MatrixXd a = to_matrix(normal<double>({d, d}, gen));
    return a * a.transpose() + shift * Eigen::MatrixXd::Identity(d, d);
}

// Gradient and gradient-of-gradient checks of f at `inputs` (double, central differences
// with gradcheck's defaults: h = 1e-6, |analytic - numeric| <= 1e-5 + 1e-4·|numeric|;
// truncation O(h²) and rounding O(1e-16/h) errors are ~1e-10, a wrong derivative is O(1)).
void check_gradients(const std::string& what, const VarFunction& f, const std::vector<Td>& inputs) {
    INFO(what);
    const CheckResult first = gradcheck(f, inputs);
    CHECK_MESSAGE(first.ok, "gradcheck: ", first.message);
    const CheckResult second = gradgradcheck(f, inputs);
    CHECK_MESSAGE(second.ok, "gradgradcheck: ", second.message);
}

}  // namespace

// ---- sampling ------------------------------------------------------------------------------

TEST_CASE("reparameterize: z = mu + exp(logvar/2) * eps, K samples laid out [K,B,d]") {
    Generator gen(1);
    const Td mu = uniform<double>({3, 2}, gen, -1, 1), lv = uniform<double>({3, 2}, gen, -1, 1);
    // Given noise, one sample and K = 5 samples: exactly the formula.
    const Td eps1 = normal<double>({3, 2}, gen), eps5 = normal<double>({5, 3, 2}, gen);
    const Td z1 = reparameterize(V(mu), V(lv), eps1).value();
    const Td z5 = reparameterize(V(mu), V(lv), eps5).value();
    REQUIRE(z1.shape() == Shape{3, 2});
    REQUIRE(z5.shape() == Shape{5, 3, 2});
    double worst = 0;
    for (Index b = 0; b < 3; ++b)
        for (Index j = 0; j < 2; ++j) {
            const double m = mu.at({b, j}), s = std::exp(0.5 * lv.at({b, j}));
            worst = std::max(worst, rel_err(z1.at({b, j}), m + s * eps1.at({b, j})));
            for (Index k = 0; k < 5; ++k) worst = std::max(worst, rel_err(z5.at({k, b, j}), m + s * eps5.at({k, b, j})));
        }
    CHECK(worst <= 1e-15);
    // The documented flattening: row k·B + b of reshape(z, {K·B, d}) is sample k of input b.
    const Td flat = reshape(V(z5), Shape{15, 2}).value();
    CHECK(flat.at({2 * 3 + 1, 1}) == z5.at({2, 1, 1}));

    // Drawn noise: shapes, reproducibility, and the moments of N(mu, exp(logvar)).
    CHECK(reparameterize(V(mu), V(lv), gen).shape() == Shape{3, 2});
    Generator g1(42), g2(42);
    const Index N = 20000;
    const Td za = reparameterize(V(mu), V(lv), N, g1).value();
    const Td zb = reparameterize(V(mu), V(lv), N, g2).value();
    REQUIRE(za.shape() == Shape{N, 3, 2});
    CHECK(za.to_vector() == zb.to_vector());
    const Td cols = za.reshape({N, 6});
    for (Index c = 0; c < 6; ++c) {
        const double m = mu.flat(c), var = std::exp(lv.flat(c));
        const Stats st = column_stats(cols, c);
        INFO("coordinate " << c);
        // Sample mean: SE = sqrt(var/N). Sample variance of a Gaussian: SE = var·sqrt(2/(N-1)).
        CHECK(std::fabs(st.mean - m) <= 5 * std::sqrt(var / static_cast<double>(N)));
        CHECK(std::fabs(st.sd * st.sd - var) <= 5 * var * std::sqrt(2.0 / static_cast<double>(N - 1)));
    }

    CHECK_THROWS_WITH_AS(reparameterize(V(mu), V(Td::zeros({3, 3})), eps1),
                         "reparameterize: mu [3,2] and logvar [3,3] must have the same shape", Error);
    CHECK_THROWS_WITH_AS(reparameterize(V(mu), V(lv), Td::zeros({5, 2, 3})),
                         "reparameterize: eps [5,2,3] must have mu's shape [3,2] or [K] followed by it (K samples per input)",
                         Error);
    CHECK_THROWS_WITH_AS(reparameterize(V(mu), V(lv), 0, gen),
                         "reparameterize: number of samples K must be at least 1, got 0", Error);
}

// ---- KL divergences ------------------------------------------------------------------------

TEST_CASE("kl_normal_std: direct formula, Monte Carlo, reductions, event_dims, stability") {
    Generator gen(2);
    const Index B = 3, d = 4;
    const Td mu = uniform<double>({B, d}, gen, -1.5, 1.5), lv = uniform<double>({B, d}, gen, -1.5, 1.0);
    const Td kl = kl_normal_std(V(mu), V(lv)).value();
    REQUIRE(kl.shape() == Shape{B});
    std::vector<double> want(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) {
        double s = 0;
        for (Index j = 0; j < d; ++j) {
            const double m = mu.at({b, j}), l = lv.at({b, j});
            s += 1 + l - m * m - std::exp(l);
        }
        want[static_cast<std::size_t>(b)] = -0.5 * s;
    }
    CHECK(max_rel_err(kl, want) <= 1e-12);
    CHECK(kl_normal_std_mean(V(mu), V(lv)).item() == doctest::Approx((want[0] + want[1] + want[2]) / 3).epsilon(1e-12));
    CHECK(kl_normal_std_sum(V(mu), V(lv)).item() == doctest::Approx(want[0] + want[1] + want[2]).epsilon(1e-12));

    // Monte Carlo: KL = E_q[log q(z) - log p(z)], z ~ q = N(mu, exp(lv)).
    const Index N = 20000;
    const V z = reparameterize(V(mu), V(lv), N, gen);
    const Td diff = V(gaussian_log_prob(z, V(mu), V(lv)) - standard_normal_log_prob(z)).value();
    for (Index b = 0; b < B; ++b) {
        const Stats st = column_stats(diff, b);
        const double k = kl.flat(b);
        INFO("row " << b << ": closed form " << k << ", MC " << st.mean << " ± " << st.se);
        CHECK(std::fabs(st.mean - k) <= 5 * st.se);
        CHECK(5 * st.se < 0.1 * k);  // the check would catch a 10% error, let alone a factor 2
    }

    // event_dims = 3 on [B, C, H, W] is the same as flattening the event axes.
    const Td mu4 = normal<double>({2, 3, 2, 2}, gen), lv4 = uniform<double>({2, 3, 2, 2}, gen, -1, 1);
    const Td k4 = kl_normal_std(V(mu4), V(lv4), 3).value();
    const Td kf = kl_normal_std(V(mu4.reshape({2, 12})), V(lv4.reshape({2, 12}))).value();
    REQUIRE(k4.shape() == Shape{2});
    CHECK(max_rel_err(k4, kf.to_vector()) <= 1e-14);

    // Stability: KL(N(0,1)||N(0,1)) = 0 exactly; small logvar keeps full relative accuracy:
    // ½(e^l - 1 - l) = l²/4 + l³/12 + l⁴/48 + l⁵/240 + O(l⁶) (the next term is 3e-19 of the
    // value at l = 1e-4). expm1(l) - l is exact subtraction (Sterbenz) after one rounding of
    // expm1, ~1e-20 against 2.5e-9; exp(l) - 1 - l would lose 1e-16 to cancellation (4e-8
    // relative). The 1e-10 bound separates the two.
    CHECK(kl_normal_std(V(Td::zeros({1, 3})), V(Td::zeros({1, 3}))).item() == 0.0);
    const double l = 1e-4;
    const double small = kl_normal_std(V(Td::zeros({1, 1})), V(Td::full({1, 1}, l))).item();
    CHECK(std::fabs(small - (l * l / 4 + l * l * l / 12 + l * l * l * l / 48 + l * l * l * l * l / 240)) <= 1e-10 * small);
    // Large |logvar| stays finite where the value is finite.
    const Td extreme = kl_normal_std(V(Td::from({1, 2}, {0.0, 0.0})), V(Td::from({1, 2}, {-800.0, 800.0}))).value();
    CHECK(extreme.item() == INFINITY);  // e^800/2 > DBL_MAX: an honest +inf, not NaN
    const double big = kl_normal_std(V(Td::zeros({1, 1})), V(Td::full({1, 1}, -600.0))).item();
    CHECK(big == doctest::Approx(0.5 * (600 - 1)).epsilon(1e-15));

    CHECK_THROWS_WITH_AS(kl_normal_std(V(mu), V(Td::zeros({B, d + 1}))),
                         "kl_normal_std: mu [3,4] and logvar [3,5] must have the same shape", Error);
    CHECK_THROWS_WITH_AS(kl_normal_std(V(mu), V(lv), 3),
                         "kl_normal_std: event_dims 3 must be between 1 and the rank of the (broadcast) operand shape [3,4]",
                         Error);
}

TEST_CASE("kl_normal_diag: direct formula, Monte Carlo, KL(P||P) = 0, prior N(0,I), broadcasting") {
    Generator gen(3);
    const Index B = 3, d = 4;
    const Td mu1 = uniform<double>({B, d}, gen, -1, 1), lv1 = uniform<double>({B, d}, gen, -1, 1);
    const Td mu2 = uniform<double>({B, d}, gen, -1, 1), lv2 = uniform<double>({B, d}, gen, -1, 1);
    const Td kl = kl_normal_diag(V(mu1), V(lv1), V(mu2), V(lv2)).value();
    REQUIRE(kl.shape() == Shape{B});
    std::vector<double> want(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b) {
        double s = 0;
        for (Index j = 0; j < d; ++j) {
            const double a1 = lv1.at({b, j}), a2 = lv2.at({b, j}), dm = mu1.at({b, j}) - mu2.at({b, j});
            s += a2 - a1 + (std::exp(a1) + dm * dm) / std::exp(a2) - 1;
        }
        want[static_cast<std::size_t>(b)] = 0.5 * s;
    }
    CHECK(max_rel_err(kl, want) <= 1e-12);

    const Index N = 20000;
    const V z = reparameterize(V(mu1), V(lv1), N, gen);
    const Td diff = V(gaussian_log_prob(z, V(mu1), V(lv1)) - gaussian_log_prob(z, V(mu2), V(lv2))).value();
    for (Index b = 0; b < B; ++b) {
        const Stats st = column_stats(diff, b);
        INFO("row " << b << ": closed form " << kl.flat(b) << ", MC " << st.mean << " ± " << st.se);
        CHECK(std::fabs(st.mean - kl.flat(b)) <= 5 * st.se);
        CHECK(5 * st.se < 0.1 * kl.flat(b));
    }

    // KL(P||P) = 0 exactly; against N(0, I) it is kl_normal_std.
    const Td self = kl_normal_diag(V(mu1), V(lv1), V(mu1), V(lv1)).value();
    for (Index b = 0; b < B; ++b) CHECK(self.flat(b) == 0.0);
    const Td vs_std = kl_normal_diag(V(mu1), V(lv1), V(Td::zeros({B, d})), V(Td::zeros({B, d}))).value();
    CHECK(max_rel_err(vs_std, kl_normal_std(V(mu1), V(lv1)).value().to_vector()) <= 1e-13);

    // A shared prior [d] broadcasts over the batch.
    const Td pm = uniform<double>({d}, gen, -1, 1), pl = uniform<double>({d}, gen, -1, 1);
    const Td shared = kl_normal_diag(V(mu1), V(lv1), V(pm), V(pl)).value();
    for (Index b = 0; b < B; ++b) {
        const Td row_m = mu1.slice(0, b, b + 1).contiguous(), row_l = lv1.slice(0, b, b + 1).contiguous();
        const double one = kl_normal_diag(V(row_m), V(row_l), V(pm.reshape({1, d})), V(pl.reshape({1, d}))).item();
        CHECK(rel_err(shared.flat(b), one) <= 1e-15);
    }
    // Both variances huge: exp(800) overflows, the expm1(l1 - l2) form does not.
    const double huge = kl_normal_diag(V(Td::full({1, 1}, 1.0)), V(Td::full({1, 1}, 800.0)), V(Td::zeros({1, 1})),
                                       V(Td::full({1, 1}, 801.0)))
                            .item();
    CHECK(huge == doctest::Approx(0.5 * (1 + std::expm1(-1.0))).epsilon(1e-14));

    CHECK_THROWS_WITH_AS(kl_normal_diag(V(mu1), V(lv1), V(Td::zeros({B, 5})), V(lv2)),
                         "kl_normal_diag: shapes do not broadcast together: mu1 [3,4], logvar1 [3,4], mu2 [3,5], logvar2 [3,4]",
                         Error);
}

TEST_CASE("kl_gaussian_full and gaussian_full_log_prob: Monte Carlo, diagonal case, KL(P||P) = 0, errors") {
    Generator gen(4);
    const Index d = 3;
    // S2 is larger than S1 on average, so every term of the KL (log det ratio included) matters.
    const Eigen::MatrixXd S1 = random_spd(d, gen, 0.3), S2 = random_spd(d, gen, 2.0);
    const Eigen::VectorXd m1 = to_matrix(normal<double>({d, 1}, gen)), m2 = to_matrix(normal<double>({d, 1}, gen));
    const double kl = kl_gaussian_full(m1, S1, m2, S2);

    // gaussian_full_log_prob against the bivariate normal density written out with ρ.
    {
        const double sx = 1.3, sy = 0.7, rho = -0.6, mx = 0.2, my = -0.4;
        Eigen::MatrixXd S(2, 2);
        S << sx * sx, rho * sx * sy, rho * sx * sy, sy * sy;
        Eigen::MatrixXd x(2, 2);
        x << 1.0, 0.5, -2.0, 0.3;
        const Eigen::VectorXd lp = gaussian_full_log_prob(x, Eigen::Vector2d(mx, my), S);
        for (int i = 0; i < 2; ++i) {
            const double dx = (x(i, 0) - mx) / sx, dy = (x(i, 1) - my) / sy;
            const double want = -std::log(2 * std::numbers::pi * sx * sy * std::sqrt(1 - rho * rho)) -
                                (dx * dx + dy * dy - 2 * rho * dx * dy) / (2 * (1 - rho * rho));
            CHECK(rel_err(lp(i), want) <= 1e-13);
        }
    }

    // Monte Carlo: KL = E_{x~P1}[log p1(x) - log p2(x)], x = m1 + L1 ε.
    const Index N = 20000;
    const Eigen::MatrixXd L1 = Eigen::LLT<Eigen::MatrixXd>(S1).matrixL();
    const Eigen::MatrixXd eps = to_matrix(normal<double>({N, d}, gen));
    const Eigen::MatrixXd x = (eps * L1.transpose()).rowwise() + m1.transpose();
    const Eigen::VectorXd diff = gaussian_full_log_prob(x, m1, S1) - gaussian_full_log_prob(x, m2, S2);
    const Td diff_t = from_matrix(diff);
    const Stats st = column_stats(diff_t, 0);
    INFO("closed form " << kl << ", MC " << st.mean << " ± " << st.se);
    CHECK(std::fabs(st.mean - kl) <= 5 * st.se);
    CHECK(5 * st.se < 0.1 * kl);
    // Dropping the log-det term (or any term this large) would be seen.
    CHECK(std::fabs(0.5 * std::log(S2.determinant() / S1.determinant())) > 10 * st.se);

    // Diagonal covariances: the diagonal formula (and the diagonal log density).
    {
        const Td mu_a = normal<double>({1, d}, gen), mu_b = normal<double>({1, d}, gen);
        const Td lv_a = uniform<double>({1, d}, gen, -1, 1), lv_b = uniform<double>({1, d}, gen, -1, 1);
        Eigen::MatrixXd Sa = Eigen::MatrixXd::Zero(d, d), Sb = Eigen::MatrixXd::Zero(d, d);
        for (Index j = 0; j < d; ++j) Sa(j, j) = std::exp(lv_a.flat(j)), Sb(j, j) = std::exp(lv_b.flat(j));
        const Eigen::VectorXd ma = to_matrix(mu_a).transpose(), mb = to_matrix(mu_b).transpose();
        const double diag = kl_normal_diag(V(mu_a), V(lv_a), V(mu_b), V(lv_b)).item();
        CHECK(rel_err(kl_gaussian_full(ma, Sa, mb, Sb), diag) <= 1e-12);
        const Td pts = normal<double>({4, d}, gen);
        const Eigen::VectorXd full = gaussian_full_log_prob(to_matrix(pts), ma, Sa);
        const Td diag_lp = gaussian_log_prob(V(pts), V(mu_a), V(lv_a)).value();
        for (Index i = 0; i < 4; ++i) CHECK(rel_err(full(i), diag_lp.flat(i)) <= 1e-12);
    }

    // KL(P||P) = 0 up to rounding in the triangular solves.
    CHECK(std::fabs(kl_gaussian_full(m1, S1, m1, S1)) <= 1e-12);

    // Tensor overloads, in double and in float.
    const Td tm1 = from_matrix(m1).reshape({d}), tm2 = from_matrix(m2).reshape({d});
    const Td tS1 = from_matrix(S1), tS2 = from_matrix(S2);
    CHECK(kl_gaussian_full(tm1, tS1, tm2, tS2) == kl);
    auto to_float = [](const Td& t) {
        Tensor<float> f = Tensor<float>::empty(t.shape());
        for (Index i = 0; i < t.numel(); ++i) f.data()[i] = static_cast<float>(t.flat(i));
        return f;
    };
    // Float inputs are rounded by ~6e-8 relative; the KL moves by about that much times its
    // condition, well inside 1e-4.
    CHECK(kl_gaussian_full(to_float(tm1), to_float(tS1), to_float(tm2), to_float(tS2)) == doctest::Approx(kl).epsilon(1e-4));
    const Td lp_t = gaussian_full_log_prob(from_matrix(x.topRows(3)), tm1, tS1);
    REQUIRE(lp_t.shape() == Shape{3});
    const Eigen::VectorXd lp_e = gaussian_full_log_prob(Eigen::MatrixXd(x.topRows(3)), m1, S1);
    for (Index i = 0; i < 3; ++i) CHECK(lp_t.flat(i) == lp_e(i));
    CHECK(gaussian_full_log_prob(from_matrix(x.topRows(1)).reshape({d}), tm1, tS1).shape() == Shape{});

    // Errors: not positive definite, not symmetric, non-finite, shapes.
    Eigen::MatrixXd indefinite(2, 2);
    indefinite << 1, 2, 2, 1;  // eigenvalues 3 and -1
    const Eigen::Vector2d z2 = Eigen::Vector2d::Zero();
    CHECK_THROWS_WITH_AS(kl_gaussian_full(z2, Eigen::MatrixXd(Eigen::Matrix2d::Identity()), z2, indefinite),
                         "kl_gaussian_full: cov2 [2,2] is not positive definite (Cholesky factorisation failed)", Error);
    Eigen::MatrixXd asym(2, 2);
    asym << 2, 1, 0, 2;
    CHECK_THROWS_WITH_AS(kl_gaussian_full(z2, asym, z2, asym),
                         "kl_gaussian_full: cov1 [2,2] is not symmetric (largest |S - Sᵀ| entry 1)", Error);
    Eigen::MatrixXd nan_cov = Eigen::Matrix2d::Identity();
    nan_cov(0, 0) = NAN;
    CHECK_THROWS_WITH_AS(gaussian_full_log_prob(Eigen::MatrixXd(Eigen::MatrixXd::Zero(1, 2)), z2, nan_cov),
                         "gaussian_full_log_prob: cov [2,2] has non-finite entries", Error);
    CHECK_THROWS_WITH_AS(kl_gaussian_full(m1, S1, Eigen::VectorXd(Eigen::Vector2d::Zero()), S2),
                         "kl_gaussian_full: shapes must be mu [d], cov [d,d] with one d: got mu1 [3], cov1 [3,3], mu2 [2], "
                         "cov2 [3,3]",
                         Error);
    CHECK_THROWS_WITH_AS(kl_gaussian_full(tm1.reshape({1, d}), tS1, tm2, tS2),
                         "kl_gaussian_full: expected mu [d] and cov [d,d], got mu1 [1,3], cov1 [3,3], mu2 [3], cov2 [3,3]",
                         Error);
}

// ---- log-likelihoods -----------------------------------------------------------------------

TEST_CASE("log-likelihoods: Bernoulli with logits, diagonal Gaussian, standard normal") {
    Generator gen(5);
    const Index B = 3, D = 6;
    // Bernoulli: x·a - sp(a) and the probability form x log σ(a) + (1-x) log(1-σ(a)).
    Td x = bernoulli<double>({B, D}, gen, 0.5);
    x.data()[4] = 0.3;  // grey level: the formula holds for any x in [0, 1]
    const Td a = uniform<double>({B, D}, gen, -5, 5);
    const Td lb = bernoulli_log_prob(V(x), V(a)).value();
    REQUIRE(lb.shape() == Shape{B});
    std::vector<double> direct(static_cast<std::size_t>(B)), prob(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b)
        for (Index j = 0; j < D; ++j) {
            const double xv = x.at({b, j}), av = a.at({b, j}), p = 1 / (1 + std::exp(-av));
            direct[static_cast<std::size_t>(b)] += xv * av - std::log1p(std::exp(av));
            prob[static_cast<std::size_t>(b)] += xv * std::log(p) + (1 - xv) * std::log(1 - p);
        }
    CHECK(max_rel_err(lb, direct) <= 1e-13);
    CHECK(max_rel_err(lb, prob) <= 1e-12);

    // |a| = 100: log σ(100) = -log1p(e⁻¹⁰⁰) = -e⁻¹⁰⁰ to 1e-44 relative, log(1-σ(100)) = -100 - e⁻¹⁰⁰.
    // In double the cancellation-free form returns these to the last bit (x·a - sp(a) would
    // give 0 instead of -3.7e-44); in float, e⁻¹⁰⁰ is below the smallest normal number, so
    // only finiteness and absolute accuracy are asked for.
    {
        const double e = std::exp(-100.0);
        const std::vector<double> xs{1, 0, 1, 0, 0.5, 0.5}, as{100, 100, -100, -100, 100, -100};
        const std::vector<double> want{-e, -100 - e, -100 - e, -e, -50 - e, -50 - e};
        V xv(Td::from({6, 1}, xs)), av(Td::from({6, 1}, as), true);
        const V lp = bernoulli_log_prob(xv, av);
        for (std::size_t i = 0; i < 6; ++i) {
            INFO("x = " << xs[i] << ", a = " << as[i]);
            CHECK(std::fabs(lp.value().flat(static_cast<Index>(i)) - want[i]) <= 1e-15 * std::fabs(want[i]));
        }
        sum(lp).backward();  // d/da = x - σ(a)
        for (std::size_t i = 0; i < 6; ++i)
            CHECK(av.grad().flat(static_cast<Index>(i)) == doctest::Approx(xs[i] - (as[i] > 0 ? 1.0 : 0.0)).epsilon(1e-15));

        std::vector<float> xf(xs.begin(), xs.end()), af(as.begin(), as.end());
        Var<float> xv32(Tensor<float>::from({6, 1}, xf)), av32(Tensor<float>::from({6, 1}, af), true);
        const Var<float> lp32 = bernoulli_log_prob(xv32, av32);
        sum(lp32).backward();
        for (std::size_t i = 0; i < 6; ++i) {
            const float v = lp32.value().flat(static_cast<Index>(i)), g = av32.grad().flat(static_cast<Index>(i));
            CHECK(std::isfinite(v));
            CHECK(std::isfinite(g));
            CHECK(std::fabs(v - want[i]) <= 1e-6 * std::max(1.0, std::fabs(want[i])));
            CHECK(std::fabs(g - (xs[i] - (as[i] > 0 ? 1.0 : 0.0))) <= 1e-6);
        }
    }

    // Diagonal Gaussian: -½ Σ [log 2π + logvar + (x-μ)²/exp(logvar)].
    const Td xg = normal<double>({B, D}, gen), mu = normal<double>({B, D}, gen), lv = uniform<double>({B, D}, gen, -2, 2);
    const Td lg = gaussian_log_prob(V(xg), V(mu), V(lv)).value();
    std::vector<double> gwant(static_cast<std::size_t>(B)), swant(static_cast<std::size_t>(B));
    for (Index b = 0; b < B; ++b)
        for (Index j = 0; j < D; ++j) {
            const double r = xg.at({b, j}) - mu.at({b, j}), l = lv.at({b, j}), zz = xg.at({b, j});
            gwant[static_cast<std::size_t>(b)] += -0.5 * (kLog2Pi + l + r * r / std::exp(l));
            swant[static_cast<std::size_t>(b)] += std::log(std::exp(-0.5 * zz * zz) / std::sqrt(2 * std::numbers::pi));
        }
    CHECK(max_rel_err(lg, gwant) <= 1e-13);
    CHECK(max_rel_err(standard_normal_log_prob(V(xg)).value(), swant) <= 1e-13);
    CHECK(max_rel_err(gaussian_log_prob(V(xg), V(Td::zeros({B, D})), V(Td::zeros({B, D}))).value(), swant) <= 1e-13);

    // Broadcasting: data [B, D] against K decoder outputs [K, B, D] with one shared variance.
    const Index K = 4;
    const Td mk = normal<double>({K, B, D}, gen);
    const Td shared_lv = Td::scalar(-0.7);
    const Td lk = gaussian_log_prob(V(xg), V(mk), V(shared_lv)).value();
    REQUIRE(lk.shape() == Shape{K, B});
    for (Index k = 0; k < K; ++k) {
        const Td one = gaussian_log_prob(V(xg), V(mk.slice(0, k, k + 1).contiguous().reshape({B, D})),
                                         V(Td::full({B, D}, -0.7)))
                           .value();
        for (Index b = 0; b < B; ++b) CHECK(rel_err(lk.at({k, b}), one.flat(b)) <= 1e-14);
    }
    const Td lbk = bernoulli_log_prob(V(x), V(normal<double>({K, B, D}, gen))).value();
    CHECK(lbk.shape() == Shape{K, B});

    // event_dims = 3 on images [B, C, H, W].
    const Td img = bernoulli<double>({2, 1, 3, 3}, gen, 0.3), logit = normal<double>({2, 1, 3, 3}, gen);
    const Td li = bernoulli_log_prob(V(img), V(logit), 3).value();
    const Td lf = bernoulli_log_prob(V(img.reshape({2, 9})), V(logit.reshape({2, 9}))).value();
    REQUIRE(li.shape() == Shape{2});
    CHECK(max_rel_err(li, lf.to_vector()) <= 1e-14);
    CHECK(standard_normal_log_prob(V(img), 3).shape() == Shape{2});
    CHECK(standard_normal_log_prob(V(img), 4).shape() == Shape{});

    CHECK_THROWS_WITH_AS(bernoulli_log_prob(V(x), V(Td::zeros({B, D + 1}))),
                         "bernoulli_log_prob: shapes do not broadcast together: x [3,6], logits [3,7]", Error);
    CHECK_THROWS_WITH_AS(gaussian_log_prob(V(xg), V(mu), V(Td::zeros({2, D}))),
                         "gaussian_log_prob: shapes do not broadcast together: x [3,6], mu [3,6], logvar [2,6]", Error);
    CHECK_THROWS_WITH_AS(
        standard_normal_log_prob(V(xg), 0),
        "standard_normal_log_prob: event_dims 0 must be between 1 and the rank of the (broadcast) operand shape [3,6]", Error);
}

// ---- ELBO and IWAE -------------------------------------------------------------------------

TEST_CASE("elbo, iwae_log_weights and iwae_bound: values, shapes, stability, errors") {
    Generator gen(6);
    const Index K = 5, B = 3, d = 2;
    const Td mu = normal<double>({B, d}, gen), lv = uniform<double>({B, d}, gen, -1, 1);
    const Td lpx1 = normal<double>({B}, gen), lpxk = normal<double>({K, B}, gen);
    const Td kl = kl_normal_std(V(mu), V(lv)).value();
    const Td e1 = elbo(V(lpx1), V(mu), V(lv)).value(), ek = elbo(V(lpxk), V(mu), V(lv)).value();
    REQUIRE(ek.shape() == Shape{B});
    for (Index b = 0; b < B; ++b) {
        double m = 0;
        for (Index k = 0; k < K; ++k) m += lpxk.at({k, b}) / static_cast<double>(K);
        CHECK(rel_err(e1.flat(b), lpx1.flat(b) - kl.flat(b)) <= 1e-15);
        CHECK(rel_err(ek.flat(b), m - kl.flat(b)) <= 1e-14);
    }

    // log w = log p(x|z) + log N(z; 0, I) - log N(z; mu, e^lv), term by term.
    const V z = reparameterize(V(mu), V(lv), K, gen);
    const Td lw = iwae_log_weights(V(lpxk), z, V(mu), V(lv)).value();
    REQUIRE(lw.shape() == Shape{K, B});
    for (Index k = 0; k < K; ++k)
        for (Index b = 0; b < B; ++b) {
            double lpz = 0, lqz = 0;
            for (Index j = 0; j < d; ++j) {
                const double zz = z.value().at({k, b, j}), l = lv.at({b, j}), r = zz - mu.at({b, j});
                lpz += -0.5 * (kLog2Pi + zz * zz);
                lqz += -0.5 * (kLog2Pi + l + r * r / std::exp(l));
            }
            CHECK(rel_err(lw.at({k, b}), lpxk.at({k, b}) + lpz - lqz) <= 1e-13);
        }

    // IWAE_K = log mean_k exp(log w_k), over axis 0 or any axis.
    const Td iw = iwae_bound(V(lw)).value();
    REQUIRE(iw.shape() == Shape{B});
    for (Index b = 0; b < B; ++b) {
        double s = 0;
        for (Index k = 0; k < K; ++k) s += std::exp(lw.at({k, b}));
        CHECK(rel_err(iw.flat(b), std::log(s / static_cast<double>(K))) <= 1e-14);
    }
    const Td iw_t = iwae_bound(V(lw.transpose().contiguous()), 1).value();
    CHECK(max_rel_err(iw_t, iw.to_vector()) <= 1e-15);
    // K = 1: the log-weight itself. Log-weights near -1000 (exp underflows to 0 in double):
    // the bound is -1000 + log mean exp(lw + 1000), as the max-shifted logsumexp gives.
    CHECK(iwae_bound(V(lw.slice(0, 0, 1).contiguous())).value().to_vector() == lw.slice(0, 0, 1).contiguous().to_vector());
    const Td far = Td::from({3, 1}, {-1000.0, -1001.0, -1003.0});
    const double want_far = -1000.0 + std::log((1 + std::exp(-1.0) + std::exp(-3.0)) / 3);
    CHECK(rel_err(iwae_bound(V(far)).item(), want_far) <= 1e-15);

    CHECK_THROWS_WITH_AS(elbo(V(Td::zeros({B, K})), V(mu), V(lv)),
                         "elbo: log_px_given_z [3,5] must be [3] (one sample of z per input) or [K,3] (K samples), to "
                         "match mu [3,2] with event_dims 1",
                         Error);
    CHECK_THROWS_WITH_AS(iwae_log_weights(V(Td::zeros({B, K})), z, V(mu), V(lv)),
                         "iwae_log_weights: log_px_given_z [3,5] must have the batch shape [5,3] of z [5,3,2] (with mu "
                         "[3,2], event_dims 1)",
                         Error);
    CHECK_THROWS_WITH_AS(iwae_bound(V(Td::scalar(0.0))), "iwae_bound: log_w must have an axis of K samples, got shape []",
                         Error);
    CHECK_THROWS_WITH_AS(iwae_bound(V(Td::zeros({0, 3}))), "iwae_bound: needs at least one sample along axis 0 of [0,3]",
                         Error);
}

// ---- a model whose log p(x) is known exactly -----------------------------------------------
//
// p(z) = N(0, I_d), p(x|z) = N(Wz + b, σ²I_D)  ⇒  p(x) = N(b, WWᵀ + σ²I),
// p(z|x) = N(μ_post, Σ_post), Σ_post = (I + WᵀW/σ²)⁻¹, μ_post = Σ_post Wᵀ(x - b)/σ².
namespace {

struct LinearGaussian {
    Index D, d;
    double sigma2;
    Eigen::MatrixXd W;
    Eigen::VectorXd b;

    Eigen::MatrixXd post_cov() const {
        return (Eigen::MatrixXd::Identity(d, d) + W.transpose() * W / sigma2).inverse();
    }
    Eigen::VectorXd post_mean(const Eigen::VectorXd& x) const { return post_cov() * W.transpose() * (x - b) / sigma2; }
    Eigen::MatrixXd marginal_cov() const { return W * W.transpose() + sigma2 * Eigen::MatrixXd::Identity(D, D); }

    // log p(x|z) at K samples z [K, B, d], through ember ops: [K, B].
    V log_px_given_z(const Td& x, const V& z) const {
        const Index K = z.dim(0), B = z.dim(1);
        const V mean = matmul(reshape(z, Shape{K * B, d}), V(from_matrix(W.transpose())));
        const V dec = V(reshape(mean, Shape{K, B, D}) + from_matrix(b.transpose()).reshape({D}));
        return gaussian_log_prob(V(x), dec, V(Td::scalar(std::log(sigma2))));
    }
    // E_{z~N(m, diag s)}[log p(x|z)] = -D/2 log(2πσ²) - (||x - Wm - b||² + Σ_j s_j ||W_:j||²)/(2σ²).
    double expected_log_px(const Eigen::VectorXd& x, const Eigen::VectorXd& m, const Eigen::VectorXd& s) const {
        const double tr = (W.colwise().squaredNorm().transpose().array() * s.array()).sum();
        return -0.5 * static_cast<double>(D) * std::log(2 * std::numbers::pi * sigma2) - ((x - W * m - b).squaredNorm() + tr) / (2 * sigma2);
    }
};

}  // namespace

TEST_CASE("linear-Gaussian model: ELBO <= log p(x) with gap KL(q||p(z|x)); IWAE_K rises with K to log p(x)") {
    Generator gen(7);
    const Index D = 5, d = 2, B = 4;
    LinearGaussian m{D, d, 0.25, 0.8 * to_matrix(normal<double>({D, d}, gen)), to_matrix(normal<double>({D, 1}, gen))};
    // Data drawn from the model.
    const Eigen::MatrixXd zt = to_matrix(normal<double>({B, d}, gen));
    const Eigen::MatrixXd X = ((zt * m.W.transpose()).rowwise() + m.b.transpose()) +
                              std::sqrt(m.sigma2) * to_matrix(normal<double>({B, D}, gen));
    const Td x = from_matrix(X);
    const Eigen::VectorXd log_px = gaussian_full_log_prob(X, m.b, m.marginal_cov());

    // A deliberately imperfect q: diagonal (the posterior is correlated), mean shifted by
    // half a posterior standard deviation, variances 1.5× the posterior marginals.
    const Eigen::MatrixXd Sp = m.post_cov();
    Td mu_q = Td::empty({B, d}), lv_q = Td::empty({B, d});
    std::vector<Eigen::VectorXd> mq(static_cast<std::size_t>(B)), sq(static_cast<std::size_t>(B));
    for (Index i = 0; i < B; ++i) {
        const Eigen::VectorXd mp = m.post_mean(X.row(i).transpose());
        mq[static_cast<std::size_t>(i)] = mp + 0.5 * Sp.diagonal().cwiseSqrt();
        sq[static_cast<std::size_t>(i)] = 1.5 * Sp.diagonal();
        for (Index j = 0; j < d; ++j) {
            mu_q.data()[i * d + j] = mq[static_cast<std::size_t>(i)](j);
            lv_q.data()[i * d + j] = std::log(sq[static_cast<std::size_t>(i)](j));
        }
    }
    // The importance weights w = p(x,z)/q(z) have finite variance iff 2Σ_post⁻¹ - Σ_q⁻¹ ≻ 0
    // (the exponent of p(z|x)²/q(z) must be a proper Gaussian): the CLT-based margins need it.
    {
        const Eigen::MatrixXd M = 2 * Sp.inverse() - Eigen::MatrixXd(sq[0].cwiseInverse().asDiagonal());
        REQUIRE(Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(M).eigenvalues().minCoeff() > 0);
    }

    // Exact identity, deterministic: with E_q[log p(x|z)] in closed form,
    // elbo = log p(x) - KL(q || p(z|x)).
    Td exp_lpx = Td::empty({B});
    for (Index i = 0; i < B; ++i) exp_lpx.data()[i] = m.expected_log_px(X.row(i).transpose(), mq[static_cast<std::size_t>(i)], sq[static_cast<std::size_t>(i)]);
    const Td elbo_exact = elbo(V(exp_lpx), V(mu_q), V(lv_q)).value();
    std::vector<double> gap(static_cast<std::size_t>(B));
    for (Index i = 0; i < B; ++i) {
        const std::size_t u = static_cast<std::size_t>(i);
        gap[u] = kl_gaussian_full(mq[u], Eigen::MatrixXd(sq[u].asDiagonal()), m.post_mean(X.row(i).transpose()), Sp);
        INFO("input " << i << ": log p(x) " << log_px(i) << ", ELBO " << elbo_exact.flat(i) << ", KL(q||post) " << gap[u]);
        CHECK(std::fabs(elbo_exact.flat(i) - (log_px(i) - gap[u])) <= 1e-10);
        CHECK(gap[u] > 0.05);  // q is visibly imperfect
    }

    // Monte Carlo with N = 200 blocks of 1000 samples per input.
    const Index R = 200, N = R * 1000;
    const V z = reparameterize(V(mu_q), V(lv_q), N, gen);
    const V lpxz = m.log_px_given_z(x, z);
    const Td lw = iwae_log_weights(lpxz, z, V(mu_q), V(lv_q)).value();  // [N, B]
    const Td elbo_mc = elbo(lpxz, V(mu_q), V(lv_q)).value();
    for (Index i = 0; i < B; ++i) {
        const std::size_t u = static_cast<std::size_t>(i);
        INFO("input " << i);
        // Analytic-KL ELBO: its noise is that of log p(x|z) alone.
        const Stats sp = column_stats(lpxz.value(), i);
        CHECK(std::fabs(elbo_mc.flat(i) - (log_px(i) - gap[u])) <= 5 * sp.se);
        CHECK(elbo_mc.flat(i) <= log_px(i) + 5 * sp.se);
        // Sampled-KL ELBO (the mean log-weight, = IWAE_1): the same expectation.
        const Stats sw = column_stats(lw, i);
        CHECK(std::fabs(sw.mean - (log_px(i) - gap[u])) <= 5 * sw.se);
        CHECK(gap[u] > 10 * std::max(sp.se, sw.se));  // the gap is resolved, not within noise
    }

    // IWAE_K on consecutive blocks of K samples (K = 1, 10, 100, 1000): [N/K, B] each.
    // The mean over blocks estimates E[IWAE_K]. Going from K to 10K, block r of size 10K
    // is made of sub-blocks 10r..10r+9, so est(10K) - est(K) = mean_r Δ_r with
    // Δ_r = IWAE_10K(block r) - mean of its sub-blocks' IWAE_K: a paired difference whose
    // standard error comes from the Δ_r themselves. E[Δ] > 0 (Burda et al., Theorem 1,
    // strict when w is not constant); the check is that the estimate is above 5 SEs.
    std::vector<Td> blocks;
    for (Index K : {1, 10, 100, 1000}) blocks.push_back(iwae_bound(V(lw.reshape({N / K, K, B})), 1).value());
    // χ² = Var_q(w)/p(x)², estimated self-normalised from all N weights; for large K,
    // log p(x) - E[IWAE_K] = χ²/(2K) + O(K⁻²) (delta method).
    for (Index i = 0; i < B; ++i) {
        INFO("input " << i);
        double mx = -INFINITY;
        for (Index n = 0; n < N; ++n) mx = std::max(mx, lw.at({n, i}));
        double s1 = 0, s2 = 0;
        for (Index n = 0; n < N; ++n) {
            const double w = std::exp(lw.at({n, i}) - mx);
            s1 += w, s2 += w * w;
        }
        const double chi2 = (s2 / static_cast<double>(N)) / ((s1 / static_cast<double>(N)) * (s1 / static_cast<double>(N))) - 1;
        std::vector<Stats> est;
        for (const Td& t : blocks) est.push_back(column_stats(t, i));
        for (std::size_t k = 0; k < est.size(); ++k) {
            INFO("K = " << std::pow(10, k) << ": IWAE " << est[k].mean << " ± " << est[k].se << ", log p(x) " << log_px(i)
                        << ", chi2 " << chi2);
            CHECK(est[k].mean <= log_px(i) + 5 * est[k].se);
        }
        for (std::size_t k = 0; k + 1 < blocks.size(); ++k) {
            const Td& small = blocks[k];
            const Td& large = blocks[k + 1];
            const Index nb = large.dim(0);
            Td delta = Td::empty({nb, 1});
            for (Index r = 0; r < nb; ++r) {
                double sub = 0;
                for (Index j = 0; j < 10; ++j) sub += small.at({10 * r + j, i}) / 10;
                delta.data()[r] = large.at({r, i}) - sub;
            }
            const Stats sd = column_stats(delta, 0);
            INFO("K = " << std::pow(10, k) << " -> " << std::pow(10, k + 1) << ": rise " << sd.mean << " ± " << sd.se);
            CHECK(sd.mean > 5 * sd.se);
        }
        // IWAE_1000 is within its bias χ²/2000 (allowing 100% error on that asymptotic
        // term) plus 5 SE of log p(x), and much closer than the ELBO.
        const double gap1000 = log_px(i) - est[3].mean;
        INFO("log p(x) - IWAE_1000 = " << gap1000 << ", chi2/2000 = " << chi2 / 2000 << ", SE " << est[3].se);
        CHECK(gap1000 >= -5 * est[3].se);
        CHECK(gap1000 <= chi2 / 1000 + 5 * est[3].se);
        CHECK(std::fabs(gap1000) < 0.1 * gap[static_cast<std::size_t>(i)]);
    }
}

TEST_CASE("linear-Gaussian model with the exact posterior: every sample's ELBO is log p(x)") {
    Generator gen(8);
    const Index D = 5, d = 2, B = 3;
    // W with orthogonal columns makes WᵀW, hence Σ_post, diagonal: a diagonal q can be exact.
    const Eigen::MatrixXd Q = Eigen::HouseholderQR<Eigen::MatrixXd>(to_matrix(normal<double>({D, d}, gen))).householderQ() *
                              Eigen::MatrixXd::Identity(D, d);
    const Eigen::MatrixXd W = Q * Eigen::Vector2d(1.5, 0.7).asDiagonal();
    LinearGaussian m{D, d, 0.3, W, to_matrix(normal<double>({D, 1}, gen))};
    const Eigen::MatrixXd Sp = m.post_cov();
    REQUIRE(std::fabs(Sp(0, 1)) <= 1e-13);
    const Eigen::MatrixXd X = to_matrix(normal<double>({B, D}, gen)) + Eigen::MatrixXd::Ones(B, D);
    const Td x = from_matrix(X);
    const Eigen::VectorXd log_px = gaussian_full_log_prob(X, m.b, m.marginal_cov());

    Td mu_q = Td::empty({B, d}), lv_q = Td::empty({B, d});
    for (Index i = 0; i < B; ++i) {
        const Eigen::VectorXd mp = m.post_mean(X.row(i).transpose());
        for (Index j = 0; j < d; ++j) mu_q.data()[i * d + j] = mp(j), lv_q.data()[i * d + j] = std::log(Sp(j, j));
        CHECK(std::fabs(kl_gaussian_full(mp, Eigen::MatrixXd(Sp.diagonal().asDiagonal()), mp, Sp)) <= 1e-12);
    }
    // log p(x|z) + log p(z) - log q(z|x) = log p(x|z) + log p(z) - log p(z|x) = log p(x) for
    // every z: zero variance. Values are O(10); rounding is ~1e-14.
    const Index N = 1000;
    const V z = reparameterize(V(mu_q), V(lv_q), N, gen);
    const V lpxz = m.log_px_given_z(x, z);
    const Td lw = iwae_log_weights(lpxz, z, V(mu_q), V(lv_q)).value();
    double worst = 0;
    for (Index n = 0; n < N; ++n)
        for (Index i = 0; i < B; ++i) worst = std::max(worst, std::fabs(lw.at({n, i}) - log_px(i)));
    INFO("largest |log w - log p(x)| over " << N << " samples: " << worst);
    CHECK(worst <= 1e-10);
    const Td iw = iwae_bound(V(lw)).value();
    for (Index i = 0; i < B; ++i) CHECK(std::fabs(iw.flat(i) - log_px(i)) <= 1e-10);

    // The analytic-KL ELBO: exact in closed form, and its MC estimate within 5 SE.
    Td exp_lpx = Td::empty({B});
    for (Index i = 0; i < B; ++i)
        exp_lpx.data()[i] = m.expected_log_px(X.row(i).transpose(), m.post_mean(X.row(i).transpose()), Sp.diagonal());
    const Td e_exact = elbo(V(exp_lpx), V(mu_q), V(lv_q)).value();
    const Td e_mc = elbo(lpxz, V(mu_q), V(lv_q)).value();
    for (Index i = 0; i < B; ++i) {
        CHECK(std::fabs(e_exact.flat(i) - log_px(i)) <= 1e-10);
        CHECK(std::fabs(e_mc.flat(i) - log_px(i)) <= 5 * column_stats(lpxz.value(), i).se);
    }
}

// ---- gradients -----------------------------------------------------------------------------

TEST_CASE("gradients of the KLs, log-likelihoods, ELBO and IWAE (double, first and second order)") {
    Generator gen(9);
    const Index K = 3, B = 2, d = 3, D = 4;
    auto u = [&](const Shape& s, double lo, double hi) { return uniform<double>(s, gen, lo, hi); };
    const Td mu = u({B, d}, -1.5, 1.5), lv = u({B, d}, -1.5, 1.5), mu2 = u({B, d}, -1, 1), lv2 = u({B, d}, -1, 1);

    check_gradients("kl_normal_std", [](const std::vector<V>& v) { return kl_normal_std(v[0], v[1]); }, {mu, lv});
    check_gradients("kl_normal_std_mean", [](const std::vector<V>& v) { return kl_normal_std_mean(v[0], v[1]); }, {mu, lv});
    check_gradients("kl_normal_diag", [](const std::vector<V>& v) { return kl_normal_diag(v[0], v[1], v[2], v[3]); },
                    {mu, lv, mu2, lv2});
    check_gradients("kl_normal_diag, shared prior [d]",
                    [](const std::vector<V>& v) { return kl_normal_diag(v[0], v[1], v[2], v[3]); },
                    {mu, lv, u({d}, -1, 1), u({d}, -1, 1)});

    Td x = bernoulli<double>({B, D}, gen, 0.5);
    x.data()[1] = 0.3;
    check_gradients("bernoulli_log_prob", [](const std::vector<V>& v) { return bernoulli_log_prob(v[0], v[1]); },
                    {x, u({B, D}, -4, 4)});
    check_gradients("gaussian_log_prob", [](const std::vector<V>& v) { return gaussian_log_prob(v[0], v[1], v[2]); },
                    {u({B, D}, -2, 2), u({B, D}, -2, 2), u({B, D}, -1.5, 1.5)});
    check_gradients("gaussian_log_prob, broadcast [K,B,D] means and a scalar logvar",
                    [](const std::vector<V>& v) { return gaussian_log_prob(v[0], v[1], v[2]); },
                    {u({B, D}, -2, 2), u({K, B, D}, -2, 2), Td::scalar(0.3)});
    check_gradients("standard_normal_log_prob", [](const std::vector<V>& v) { return standard_normal_log_prob(v[0]); },
                    {u({B, d}, -2, 2)});

    const Td eps = normal<double>({K, B, d}, gen);
    check_gradients("reparameterize", [&eps](const std::vector<V>& v) { return reparameterize(v[0], v[1], eps); }, {mu, lv});
    check_gradients("elbo", [](const std::vector<V>& v) { return elbo(v[0], v[1], v[2]); }, {u({K, B}, -5, 0), mu, lv});
    check_gradients("iwae_bound", [](const std::vector<V>& v) { return iwae_bound(v[0]); }, {u({K, B}, -5, 0)});
    check_gradients("iwae_log_weights",
                    [](const std::vector<V>& v) { return iwae_log_weights(v[0], v[1], v[2], v[3]); },
                    {u({K, B}, -5, 0), u({K, B, d}, -2, 2), mu, lv});

    // Whole objectives through reparameterised z and a Bernoulli decoder with weights Wd:
    // the gradients an encoder and decoder receive, with respect to mu, logvar and Wd.
    const Td xb = bernoulli<double>({B, D}, gen, 0.5);
    auto decode = [xb, K, B, d, D](const V& z, const V& Wd) {
        const V logits = reshape(matmul(reshape(z, Shape{K * B, d}), Wd), Shape{K, B, D});
        return bernoulli_log_prob(V(xb), logits);
    };
    check_gradients("ELBO pipeline",
                    [&](const std::vector<V>& v) {
                        return elbo(decode(reparameterize(v[0], v[1], eps), v[2]), v[0], v[1]);
                    },
                    {mu, lv, u({d, D}, -1, 1)});
    check_gradients("IWAE pipeline",
                    [&](const std::vector<V>& v) {
                        const V z = reparameterize(v[0], v[1], eps);
                        return iwae_bound(iwae_log_weights(decode(z, v[2]), z, v[0], v[1]));
                    },
                    {mu, lv, u({d, D}, -1, 1)});
}

// ---- float, as in training -------------------------------------------------------------------

TEST_CASE("float: a VAE loss step on a batch gives finite values and gradients matching double") {
    // The same negative ELBO in float and double; float values carry ~1e-7 relative error per
    // op, and the sums here are over ≤ 64 terms of size O(10), so 1e-4 relative is ample.
    Generator gen(10);
    const Index B = 8, d = 4, D = 16;
    const Td mu = normal<double>({B, d}, gen), lv = uniform<double>({B, d}, gen, -2, 1);
    const Td Wd = normal<double>({d, D}, gen), x = bernoulli<double>({B, D}, gen, 0.4), eps = normal<double>({B, d}, gen);
    auto to_float = [](const Td& t) {
        Tensor<float> f = Tensor<float>::empty(t.shape());
        for (Index i = 0; i < t.numel(); ++i) f.data()[i] = static_cast<float>(t.flat(i));
        return f;
    };
    auto loss = [&]<class T>(const Tensor<T>& m, const Tensor<T>& l, const Tensor<T>& w, const Tensor<T>& xs,
                             const Tensor<T>& e) {
        Var<T> vm(m, true), vl(l, true), vw(w, true);
        const Var<T> z = reparameterize(vm, vl, e);
        const Var<T> neg = Var<T>(-mean(elbo(bernoulli_log_prob(Var<T>(xs), matmul(z, vw)), vm, vl)));
        neg.backward();
        return std::vector<Tensor<T>>{neg.value(), vm.grad(), vl.grad(), vw.grad()};
    };
    const auto r64 = loss(mu, lv, Wd, x, eps);
    const auto r32 = loss(to_float(mu), to_float(lv), to_float(Wd), to_float(x), to_float(eps));
    for (std::size_t k = 0; k < r64.size(); ++k) {
        double scale = 0;
        for (Index i = 0; i < r64[k].numel(); ++i) scale = std::max(scale, std::fabs(r64[k].flat(i)));
        for (Index i = 0; i < r64[k].numel(); ++i) {
            CHECK(std::isfinite(r32[k].flat(i)));
            CHECK(std::fabs(r32[k].flat(i) - r64[k].flat(i)) <= 1e-4 * std::max(1.0, scale));
        }
    }
}
