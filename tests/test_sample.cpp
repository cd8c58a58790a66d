// Samplers (include/ember/sample/), tested statistically with fixed seeds.
//
// Tolerances come from the sampling error, not from tuning:
//  * Moments from a Markov chain: the Monte-Carlo standard error of a mean of f(x) is
//    sd(f) / sqrt(ESS), with the ESS estimated from the chains (sample::ess); estimates
//    must lie within 4 of them (a 4σ band: 6e-5 two-sided per check).
//  * Final states of N independent chains are N independent draws: sample variances have
//    standard error v·sqrt(2/(N-1)), proportions sqrt(p(1-p)/N).
//  * Kolmogorov-Smirnov at α = 0.001: reject when sqrt(N)·D > 1.9495 (the asymptotic
//    Kolmogorov quantile sqrt(-½ log(α/2))).
#include <doctest/doctest.h>

#include <Eigen/Cholesky>
#include <Eigen/LU>
#include <algorithm>
#include <cmath>
#include <ember/ember.hpp>
#include <numbers>
#include <string>
#include <vector>

using namespace ember;

namespace {

using V = Var<double>;
using Matrix = Eigen::MatrixXd;

Tensor<double> to_tensor(const Matrix& m) {
    Tensor<double> t = Tensor<double>::empty(Shape{m.rows(), m.cols()});
    for (Index i = 0; i < m.rows(); ++i)
        for (Index j = 0; j < m.cols(); ++j) t.data()[i * m.cols() + j] = m(i, j);
    return t;
}

// U(x) = ½ xᵀ P x per row: the N(0, P⁻¹) target.
sample::EnergyFn<double> gaussian_energy(const Matrix& precision) {
    const Tensor<double> P = to_tensor(precision);
    return [P](const V& x) { return V(0.5 * sum(V(matmul(x, V(P)) * x), 1)); };
}

// Σ_ij = ρ^|i-j| (AR(1)); its eigenvalues lie in [(1-ρ)/(1+ρ), (1+ρ)/(1-ρ)].
Matrix ar1_covariance(Index d, double rho) {
    Matrix s(d, d);
    for (Index i = 0; i < d; ++i)
        for (Index j = 0; j < d; ++j) s(i, j) = std::pow(rho, std::abs(static_cast<double>(i - j)));
    return s;
}

// n exact draws from N(0, Σ).
Tensor<double> gaussian_draws(const Matrix& sigma, Index n, std::uint64_t seed) {
    Generator g(seed);
    const Tensor<double> xi = normal<double>(Shape{n, sigma.rows()}, g);
    const Matrix L = sigma.llt().matrixL();
    Matrix x = Eigen::Map<const Eigen::Matrix<double, -1, -1, Eigen::RowMajor>>(xi.data(), n, sigma.rows()) * L.transpose();
    return to_tensor(x);
}

double normal_cdf(double x, double sd) { return 0.5 * std::erfc(-x / (sd * std::numbers::sqrt2)); }

// sqrt(N)·D of the one-sample KS test of column `col` of x against N(0, sd²).
double ks_statistic(const Tensor<double>& x, Index col, double sd) {
    const Index n = x.dim(0), d = x.dim(1);
    std::vector<double> v(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = x.data()[i * d + col];
    std::sort(v.begin(), v.end());
    double D = 0;
    for (Index i = 0; i < n; ++i) {
        const double F = normal_cdf(v[static_cast<std::size_t>(i)], sd);
        D = std::max({D, static_cast<double>(i + 1) / n - F, F - static_cast<double>(i) / n});
    }
    return std::sqrt(static_cast<double>(n)) * D;
}
constexpr double kKsCritical = 1.9495;  // α = 0.001

struct SampleMoments {
    double mean = 0, var = 0;
};
SampleMoments moments(const std::vector<double>& v) {
    SampleMoments m;
    for (double x : v) m.mean += x;
    m.mean /= static_cast<double>(v.size());
    for (double x : v) m.var += (x - m.mean) * (x - m.mean);
    m.var /= static_cast<double>(v.size() - 1);
    return m;
}
std::vector<double> column(const Tensor<double>& x, Index col) {
    std::vector<double> v;
    const Index d = x.numel() / x.dim(0);
    for (Index i = 0; i < x.dim(0); ++i) v.push_back(x.data()[i * d + col]);
    return v;
}

// Every mean E[x_i] = 0 and second moment E[x_i x_j] = Σ_ij estimated from the recorded
// draws (one [chains, d] tensor per step) must lie within 4 Monte-Carlo standard errors.
// Returns the largest |error| / standard error seen.
double check_moments(const std::vector<Tensor<double>>& draws, const Matrix& sigma, const std::string& what) {
    const Index S = static_cast<Index>(draws.size()), C = draws[0].dim(0), d = draws[0].dim(1);
    Tensor<double> trace = Tensor<double>::empty(Shape{C, S});
    double worst = 0;
    std::string worst_label;
    int failures = 0;
    auto check = [&](auto f, double truth, const std::string& label) {
        double sum = 0, sq = 0;
        for (Index s = 0; s < S; ++s)
            for (Index c = 0; c < C; ++c) {
                const double v = f(draws[static_cast<std::size_t>(s)].data() + c * d);
                trace.data()[c * S + s] = v;
                sum += v;
                sq += v * v;
            }
        const double n = static_cast<double>(C * S), mean = sum / n, var = (sq - n * mean * mean) / (n - 1);
        const double se = std::sqrt(var / sample::ess(trace));
        const double z = std::abs(mean - truth) / se;
        if (z > worst) worst = z, worst_label = label;
        failures += z > 4;
    };
    for (Index i = 0; i < d; ++i) {
        check([i](const double* x) { return x[i]; }, 0.0, "mean " + std::to_string(i));
        for (Index j = i; j < d; ++j)
            check([i, j](const double* x) { return x[i] * x[j]; }, sigma(i, j),
                  "E[x" + std::to_string(i) + " x" + std::to_string(j) + "]");
    }
    INFO(what, ": largest error ", worst, " standard errors, at ", worst_label);
    CHECK(failures == 0);
    return worst;
}

template <class Sampler>
std::vector<Tensor<double>> record(Sampler& s, std::int64_t steps, sample::ChainStats* stats = nullptr) {
    std::vector<Tensor<double>> draws;
    auto st = s.run(steps, [&](const Tensor<double>& x, std::int64_t) { draws.push_back(x.clone()); });
    if (stats) *stats = st;
    return draws;
}

}  // namespace

TEST_CASE("sample: MALA and HMC recover the mean and covariance of correlated Gaussians (2-D and 50-D)") {
    struct Target {
        const char* name;
        Matrix sigma;
    };
    Matrix s2(2, 2);
    s2 << 1.0, 0.8, 0.8, 2.0;
    for (const Target& t : {Target{"2-D", s2}, Target{"50-D AR(1) rho 0.5", ar1_covariance(50, 0.5)}}) {
        const auto U = gaussian_energy(t.sigma.inverse());
        const Index d = t.sigma.rows(), chains = 32;
        Generator g(11);
        const Tensor<double> start = normal<double>(Shape{chains, d}, g);
        SUBCASE((std::string("MALA ") + t.name).c_str()) {
            sample::Mala<double> mala(U, start, {.step_size = 0.1, .seed = 1});
            mala.warmup(400);
            sample::ChainStats st;
            const auto draws = record(mala, 1500, &st);
            if (d > 2) CHECK(std::abs(st.acceptance_rate - 0.574) < 0.05);
            check_moments(draws, t.sigma, std::string("MALA ") + t.name);
        }
        SUBCASE((std::string("HMC ") + t.name).c_str()) {
            sample::Hmc<double> hmc(U, start, {.step_size = 0.1, .leapfrog_steps = 8, .seed = 2});
            hmc.warmup(300);
            sample::ChainStats st;
            const auto draws = record(hmc, 600, &st);
            // (In 2-D, 0.65 lies on the cliff of the acceptance curve at leapfrog's stability
            // limit, where no step hits it closely; the adaptation test uses 20-D.)
            if (d > 2) CHECK(std::abs(st.acceptance_rate - 0.65) < 0.05);
            check_moments(draws, t.sigma, std::string("HMC ") + t.name);
        }
    }
}

TEST_CASE("sample: chains started from the target stay distributed as the target (KS at alpha = 0.001)") {
    Matrix sigma(2, 2);
    sigma << 1.0, -0.6, -0.6, 0.5;
    const auto U = gaussian_energy(sigma.inverse());
    const Index n = 2000;
    const Tensor<double> start = gaussian_draws(sigma, n, 5);
    // The start passes the test (the sampler is what is being tested, not the draws).
    for (Index c = 0; c < 2; ++c) CHECK(ks_statistic(start, c, std::sqrt(sigma(c, c))) < kKsCritical);
    SUBCASE("MALA") {
        sample::Mala<double> mala(U, start, {.step_size = 0.4, .seed = 3});
        const auto st = mala.run(200);
        CHECK(st.acceptance_rate > 0.3);
        for (Index c = 0; c < 2; ++c) CHECK(ks_statistic(mala.state(), c, std::sqrt(sigma(c, c))) < kKsCritical);
    }
    SUBCASE("HMC") {
        sample::Hmc<double> hmc(U, start, {.step_size = 0.3, .leapfrog_steps = 5, .seed = 4});
        const auto st = hmc.run(100);
        CHECK(st.acceptance_rate > 0.3);
        for (Index c = 0; c < 2; ++c) CHECK(ks_statistic(hmc.state(), c, std::sqrt(sigma(c, c))) < kKsCritical);
    }
}

TEST_CASE("sample: unadjusted Langevin has the derived biased variance; MALA at the same step removes the bias") {
    // U = x²/(2σ²): x' = x - (ε/2)x/σ² + √ε ξ = a x + √ε ξ with a = 1 - ε/(2σ²), so the
    // stationary variance v solves v = a²v + ε: v = ε/(1 - a²) = σ² / (1 - ε/(4σ²)).
    // With σ² = 1 and ε = 1: a = 0.5 and v = 4/3, a third too large.
    const double eps = 1.0, sigma2 = 1.0, biased = sigma2 / (1 - eps / (4 * sigma2));
    const Index n = 20000;
    const auto U = [](const V& x) { return V(0.5 * sum(V(x * x), 1)); };
    const double se_var = [&](double v) { return v * std::sqrt(2.0 / (n - 1)); }(biased);
    SUBCASE("ULA") {
        // From x = 0: after 60 steps the start is forgotten (a^60 ~ 1e-18).
        sample::Langevin<double> ula(U, Tensor<double>::zeros(Shape{n, 1}), {.step_size = eps, .seed = 7});
        ula.run(60);
        const SampleMoments m = moments(column(ula.state(), 0));
        CHECK(std::abs(m.var - biased) < 4 * se_var);
        CHECK(std::abs(m.mean) < 4 * std::sqrt(biased / n));
    }
    SUBCASE("MALA") {
        Generator g(8);
        sample::Mala<double> mala(U, normal<double>(Shape{n, 1}, g), {.step_size = eps, .seed = 9});
        mala.run(60);
        const SampleMoments m = moments(column(mala.state(), 0));
        CHECK(std::abs(m.var - sigma2) < 4 * sigma2 * std::sqrt(2.0 / (n - 1)));
        CHECK(std::abs(m.mean) < 4 * std::sqrt(sigma2 / n));
    }
}

TEST_CASE("sample: a two-mode mixture keeps its mode weights when chains start evenly in both modes") {
    // p(x) = 0.3 N(-1.5, 1) + 0.7 N(1.5, 1): the modes overlap (the density at 0 is 0.46 of
    // the peak), so chains cross between them. P(x > 0) = 0.3 Φ(-1.5) + 0.7 Φ(1.5).
    const auto U = [](const V& x) {
        return V(-log(V(0.3 * exp(V(-0.5 * (x + 1.5) * (x + 1.5))) + 0.7 * exp(V(-0.5 * (x - 1.5) * (x - 1.5))))));
    };
    const auto energy = [&](const V& x) { return reshape(U(x), Shape{x.dim(0)}); };
    const double p_right = 0.3 * normal_cdf(-1.5, 1) + 0.7 * normal_cdf(1.5, 1);
    const Index n = 4000;
    Tensor<double> start = Tensor<double>::empty(Shape{n, 1});
    for (Index i = 0; i < n; ++i) start.data()[i] = i % 2 ? 1.5 : -1.5;  // 50/50, not 30/70
    auto share_right = [](const Tensor<double>& x) {
        double k = 0;
        for (Index i = 0; i < x.numel(); ++i) k += x.data()[i] > 0;
        return k / static_cast<double>(x.numel());
    };
    const double se = std::sqrt(p_right * (1 - p_right) / n);
    SUBCASE("MALA") {
        sample::Mala<double> mala(energy, start, {.step_size = 1.0, .seed = 12});
        mala.warmup(200);
        mala.run(600);
        CHECK(std::abs(share_right(mala.state()) - p_right) < 4 * se);
    }
    SUBCASE("HMC") {
        sample::Hmc<double> hmc(energy, start, {.step_size = 0.5, .leapfrog_steps = 5, .seed = 13});
        hmc.warmup(100);
        hmc.run(300);
        CHECK(std::abs(share_right(hmc.state()) - p_right) < 4 * se);
    }
}

TEST_CASE("sample: MALA's acceptance ratio equals the formula computed by hand") {
    const auto U = [](const V& x) { return V(0.5 * sum(V(x * x), 1)); };  // ∇U = x
    // 1-D, ε = 1/4. From x = 1 to x' = 1/2:
    //   log q(x'|x) = -(x' - x + ε/2·x)²/(2ε) = -(-0.375)²/0.5 = -0.28125
    //   log q(x|x') = -(x - x' + ε/2·x')²/(2ε) = -(0.5625)²/0.5 = -0.6328125
    //   log r = U(x) - U(x') + log q(x|x') - log q(x'|x) = 0.375 - 0.6328125 + 0.28125 = 0.0234375,
    // so the move is always accepted; the reverse move has log r = -0.0234375.
    const Tensor<double> x = Tensor<double>::from(Shape{2, 1}, {1.0, 0.5});
    const Tensor<double> xp = Tensor<double>::from(Shape{2, 1}, {0.5, 1.0});
    const auto r = sample::mala_log_accept_ratio<double>(U, x, xp, 0.25);
    CHECK(r.shape() == Shape{2});
    CHECK(r.data()[0] == doctest::Approx(0.0234375).epsilon(1e-14));
    CHECK(r.data()[1] == doctest::Approx(-0.0234375).epsilon(1e-14));

    // A 2-D anisotropic energy U = 2a² + ab + b²/2 (∇U = (4a + b, a + b)) at ε = 0.3,
    // written out term by term.
    const auto U2 = [](const V& x) {
        const V a = slice(x, 1, 0, 1), b = slice(x, 1, 1, 2);
        return reshape(V(2.0 * a * a + a * b + 0.5 * b * b), Shape{x.dim(0)});
    };
    auto u = [](double a, double b) { return 2 * a * a + a * b + 0.5 * b * b; };
    const double eps = 0.3;
    const double s[3][4] = {{0.3, -0.7, 0.1, -0.2}, {-1.2, 0.4, -0.9, 1.0}, {2.0, 1.0, 1.5, 0.5}};
    Tensor<double> from = Tensor<double>::empty(Shape{3, 2}), to = Tensor<double>::empty(Shape{3, 2});
    for (int i = 0; i < 3; ++i) {
        from.data()[2 * i] = s[i][0], from.data()[2 * i + 1] = s[i][1];
        to.data()[2 * i] = s[i][2], to.data()[2 * i + 1] = s[i][3];
    }
    const auto r2 = sample::mala_log_accept_ratio<double>(U2, from, to, eps);
    for (int i = 0; i < 3; ++i) {
        const double a = s[i][0], b = s[i][1], a2 = s[i][2], b2 = s[i][3];
        const double ga = 4 * a + b, gb = a + b, ga2 = 4 * a2 + b2, gb2 = a2 + b2;
        const double fwd = std::pow(a2 - a + eps / 2 * ga, 2) + std::pow(b2 - b + eps / 2 * gb, 2);
        const double bwd = std::pow(a - a2 + eps / 2 * ga2, 2) + std::pow(b - b2 + eps / 2 * gb2, 2);
        const double expected = u(a, b) - u(a2, b2) - bwd / (2 * eps) + fwd / (2 * eps);
        CHECK(r2.data()[i] == doctest::Approx(expected).epsilon(1e-13));
    }
}

TEST_CASE("sample: samplers and sampling functions take a lambda energy as it is") {
    const Tensor<double> x0 = Tensor<double>::zeros({4, 2});
    const auto U = [](const V& x) { return V(0.5 * sum(x * x, 1)); };  // not a std::function
    sample::Mala mala(U, x0, {.step_size = 0.1, .seed = 1});             // T deduced from x0
    sample::Langevin ula(U, x0);
    sample::Hmc hmc(U, x0);
    mala.run(2);
    ula.run(2);
    hmc.run(2);
    CHECK(mala.state().shape() == x0.shape());
    Generator g(3);
    CHECK(sample::sgld(U, x0, {.steps = 2}, g).shape() == x0.shape());
    CHECK(sample::energy_and_grad(U, x0).energy.shape() == Shape{4});
    CHECK(sample::mala_log_accept_ratio(U, x0, x0, 0.1).shape() == Shape{4});
}

TEST_CASE("sample: the Langevin proposal with a given noise, and with drawn noise") {
    const Tensor<double> x = Tensor<double>::from(Shape{2, 2}, {1, -2, 0.5, 3});
    const Tensor<double> g = Tensor<double>::from(Shape{2, 2}, {0.4, 1, -2, 0});
    const Tensor<double> xi = Tensor<double>::from(Shape{2, 2}, {0.1, -0.3, 2, 1});
    const double eps = 0.09;  // ε/2 = 0.045, √ε = 0.3
    const Tensor<double> xp = sample::langevin_proposal(x, g, eps, xi);
    for (Index i = 0; i < 4; ++i)
        CHECK(xp.data()[i] == doctest::Approx(x.data()[i] - 0.045 * g.data()[i] + 0.3 * xi.data()[i]).epsilon(1e-15));
    // The sampler's form draws ξ ~ N(0, I) from the generator: the same as drawing it first.
    Generator a(5), b(5);
    const Tensor<double> drawn = sample::langevin_proposal(x, g, eps, a);
    const Tensor<double> given = sample::langevin_proposal(x, g, eps, normal<double>(x.shape(), b));
    CHECK(drawn.to_vector() == given.to_vector());
    CHECK_THROWS_WITH_AS(sample::langevin_proposal(x, g, eps, Tensor<double>::zeros({4})),
                         doctest::Contains("must share one shape"), Error);
}

TEST_CASE("sample: warm-up adapts the step to the target acceptance, then the step stays fixed") {
    const Matrix sigma = ar1_covariance(20, 0.6);
    const auto U = gaussian_energy(sigma.inverse());
    Generator g(21);
    const Tensor<double> start = gaussian_draws(sigma, 64, 22);
    struct Case {
        const char* name;
        double target;
    };
    for (const Case c : {Case{"MALA default 0.574", 0.574}, Case{"HMC default 0.65", 0.65}, Case{"HMC 0.8", 0.8}}) {
        CAPTURE(c.name);
        // Start with steps far off in both directions.
        const bool hmc = std::string(c.name).starts_with("HMC");
        for (double initial : {1e-3, 3.0}) {
            CAPTURE(initial);
            sample::ChainStats after;
            double adapted = 0;
            if (hmc) {
                sample::Hmc<double> s(U, start, {.step_size = initial, .leapfrog_steps = 5, .seed = 23});
                s.warmup(400, {.target_accept = c.target});
                adapted = s.step_size();
                after = s.run(300);
            } else {
                sample::Mala<double> s(U, start, {.step_size = initial, .seed = 24});
                s.warmup(400);
                adapted = s.step_size();
                after = s.run(300);
            }
            CHECK(after.step_size == adapted);  // fixed after warm-up
            CHECK(std::abs(after.mean_accept_prob - c.target) < 0.05);
            CHECK(std::abs(after.acceptance_rate - c.target) < 0.05);
        }
    }
}

TEST_CASE("sample: the same seed gives the same chains, another seed other chains") {
    const auto U = gaussian_energy(Matrix::Identity(3, 3));
    Generator g(1);
    const Tensor<double> start = normal<double>(Shape{8, 3}, g);
    auto run = [&](std::uint64_t seed) {
        sample::Hmc<double> h(U, start, {.step_size = 0.3, .leapfrog_steps = 3, .seed = seed});
        h.warmup(20);
        h.run(30);
        return h.state().to_vector();
    };
    CHECK(run(5) == run(5));
    CHECK(run(5) != run(6));
    sample::Mala<float> a([](const Var<float>& x) { return Var<float>(0.5f * sum(Var<float>(x * x), 1)); },
                          Tensor<float>::zeros(Shape{4, 2}), {.step_size = 0.5, .seed = 3});
    sample::Mala<float> b([](const Var<float>& x) { return Var<float>(0.5f * sum(Var<float>(x * x), 1)); },
                          Tensor<float>::zeros(Shape{4, 2}), {.step_size = 0.5, .seed = 3});
    a.run(10);
    b.run(10);
    CHECK(a.state().to_vector() == b.state().to_vector());
}

TEST_CASE("sample: statistics returned by a call") {
    const auto U = gaussian_energy(Matrix::Identity(2, 2));
    sample::Mala<double> m(U, Tensor<double>::zeros(Shape{5, 2}), {.step_size = 0.5, .seed = 1});
    const auto st = m.run(40);
    REQUIRE(st.acceptance.size() == 5);
    double mean = 0;
    for (double a : st.acceptance) {
        CHECK(a >= 0);
        CHECK(a <= 1);
        mean += a / 5;
    }
    CHECK(st.acceptance_rate == doctest::Approx(mean));
    CHECK(st.steps == 40);
    CHECK(st.step_size == 0.5);
    double e = 0;
    for (Index i = 0; i < 5; ++i) e += m.energies().data()[i] / 5;
    CHECK(st.mean_energy == doctest::Approx(e));
    for (Index i = 0; i < 5; ++i)  // the kept energies belong to the kept states
        CHECK(m.energies().data()[i] ==
              doctest::Approx(0.5 * (std::pow(m.state().data()[2 * i], 2) + std::pow(m.state().data()[2 * i + 1], 2))));
    sample::Langevin<double> l(U, Tensor<double>::zeros(Shape{5, 2}), {.step_size = 0.1});
    const auto sl = l.run(3);
    CHECK(sl.acceptance_rate == 1.0);
    CHECK(l.warmup(2).step_size == 0.1);  // nothing to adapt without an accept step
}

TEST_CASE("sample: effective sample size and split R-hat") {
    Generator g(31);
    SUBCASE("independent draws: ESS close to the number of draws") {
        const Tensor<double> t = normal<double>(Shape{4, 2000}, g);
        const double e = sample::ess(t);
        CHECK(e > 0.9 * 8000);
        CHECK(e < 1.1 * 8000);
        CHECK(std::abs(sample::rhat(t) - 1) < 0.01);
    }
    SUBCASE("AR(1) chains: ESS close to N (1 - phi) / (1 + phi)") {
        // Relative error of the estimate ~ sqrt(2(2W+1)/N) for a window W ~ 3τ ≈ 60 lags:
        // about 6% at N = 80000, so ±20% is more than 3 standard errors.
        const double phi = 0.9;
        const Index chains = 4, n = 20000;
        const Tensor<double> xi = normal<double>(Shape{chains, n}, g);
        Tensor<double> t = Tensor<double>::empty(Shape{chains, n});
        for (Index c = 0; c < chains; ++c) {
            double x = xi.data()[c * n] / std::sqrt(1 - phi * phi);  // stationary start
            for (Index i = 0; i < n; ++i) {
                if (i > 0) x = phi * x + xi.data()[c * n + i];
                t.data()[c * n + i] = x;
            }
        }
        const double expected = static_cast<double>(chains * n) * (1 - phi) / (1 + phi);
        CHECK(sample::ess(t) == doctest::Approx(expected).epsilon(0.2));
    }
    SUBCASE("R-hat by hand, and chains that disagree") {
        // Chains [1,2,3,4] and [2,3,4,5] split into [1,2], [3,4], [2,3], [4,5]: n = 2, W = 0.5,
        // half-chain means 1.5, 3.5, 2.5, 4.5 with variance 5/3 = B/n, so
        // R̂ = sqrt(((n-1)/n W + B/n) / W) = sqrt((0.25 + 5/3) / 0.5).
        const Tensor<double> t = Tensor<double>::from(Shape{2, 4}, {1, 2, 3, 4, 2, 3, 4, 5});
        CHECK(sample::rhat(t) == doctest::Approx(std::sqrt((0.25 + 5.0 / 3) / 0.5)).epsilon(1e-14));
        Tensor<double> apart = normal<double>(Shape{4, 500}, g);
        for (Index i = 0; i < 500; ++i) apart.data()[i] += 1.0;  // one chain shifted by one sd
        CHECK(sample::rhat(apart) > 1.1);
    }
    SUBCASE("bad traces are refused") {
        CHECK_THROWS_WITH_AS(sample::ess(Tensor<double>::zeros(Shape{2, 10})), doctest::Contains("zero variance"), Error);
        CHECK_THROWS_WITH_AS(sample::rhat(Tensor<double>::zeros(Shape{10})), doctest::Contains("[chains, draws]"), Error);
        Tensor<double> nan = normal<double>(Shape{2, 10}, g);
        nan.data()[3] = NAN;
        CHECK_THROWS_WITH_AS(sample::ess(nan), doctest::Contains("NaN"), Error);
    }
}

TEST_CASE("sample: SGLD's stationary variance, gradient clipping and clamping") {
    const auto U = [](const V& x) { return V(0.5 * sum(V(x * x), 1)); };
    Generator g(41);
    SUBCASE("x <- x - a x + s xi has stationary variance s^2 / (1 - (1 - a)^2)") {
        const double a = 0.1, s = 0.1, v = s * s / (1 - (1 - a) * (1 - a));
        const Index n = 20000;
        sample::SgldStats st;
        const Tensor<double> x =
            sample::sgld<double>(U, Tensor<double>::zeros(Shape{n, 1}), {.step_size = a, .noise = s, .steps = 200}, g, &st);
        const SampleMoments m = moments(column(x, 0));
        CHECK(std::abs(m.var - v) < 4 * v * std::sqrt(2.0 / (n - 1)));
        CHECK(st.mean_energy_start == 0.0);
        CHECK(st.mean_energy_end == doctest::Approx(v / 2).epsilon(0.05));
    }
    SUBCASE("clipping and clamping") {
        const auto steep = [](const V& x) { return V(1000.0 * sum(x, 1)); };  // ∇U = 1000
        const Tensor<double> x0 = Tensor<double>::full(Shape{3, 2}, 0.5);
        const Tensor<double> clipped =
            sample::sgld<double>(steep, x0, {.step_size = 1.0, .noise = 0, .steps = 1, .grad_clip = 0.01}, g);
        for (double v : clipped.to_vector()) CHECK(v == doctest::Approx(0.49));
        const Tensor<double> clamped =
            sample::sgld<double>(steep, x0, {.step_size = 1.0, .noise = 0, .steps = 2, .clamp_min = 0, .clamp_max = 1}, g);
        for (double v : clamped.to_vector()) CHECK(v == 0.0);
        CHECK(x0.to_vector() == std::vector<double>(6, 0.5));  // the input is left alone
    }
    SUBCASE("errors") {
        const auto log_energy = [](const V& x) { return V(-sum(V(log(x)), 1)); };  // NaN for x < 0
        Tensor<double> x0 = Tensor<double>::full(Shape{4, 1}, 1.0);
        x0.data()[2] = -1.0;
        CHECK_THROWS_WITH_AS(sample::sgld<double>(log_energy, x0, {}, g), doctest::Contains("chain 2"), Error);
        CHECK_THROWS_WITH_AS(sample::sgld<double>(U, x0, {.step_size = 0}, g), doctest::Contains("step_size"), Error);
        CHECK_THROWS_WITH_AS(sample::sgld<double>(U, x0, {.clamp_min = 1, .clamp_max = 0}, g), doctest::Contains("clamp"),
                             Error);
    }
}

TEST_CASE("sample: replay buffer sampling, re-initialisation and push-back") {
    // init fills each fresh state with a running counter, so states can be traced.
    double counter = 0;
    auto init = [&](Index n, Generator&) {
        Tensor<double> t = Tensor<double>::empty(Shape{n, 3});
        for (Index i = 0; i < n; ++i)
            for (Index j = 0; j < 3; ++j) t.data()[i * 3 + j] = counter;
        counter += n > 0;
        return t;
    };
    Generator g(51);
    sample::ReplayBuffer<double> buffer(100, init, g, 0.25);
    CHECK(buffer.capacity() == 100);
    CHECK(buffer.states().shape() == Shape{100, 3});
    const Index n = 4000;
    const auto b = buffer.sample(n, g);
    REQUIRE(b.indices.size() == static_cast<std::size_t>(n));
    Index fresh = 0;
    bool ok = true;
    for (Index i = 0; i < n; ++i) {
        const auto k = static_cast<std::size_t>(i);
        ok = ok && b.indices[k] >= 0 && b.indices[k] < 100;
        fresh += b.fresh[k];
        // Fresh states come from the second init call (value 1), the others from the store (0).
        ok = ok && b.states.data()[i * 3] == (b.fresh[k] ? 1.0 : 0.0);
    }
    CHECK(ok);
    CHECK(std::abs(static_cast<double>(fresh) / n - 0.25) < 4 * std::sqrt(0.25 * 0.75 / n));
    const Tensor<double> pushed = Tensor<double>::full(Shape{2, 3}, 9.0);
    buffer.push({7, 42}, pushed);
    CHECK(buffer.states().data()[7 * 3] == 9.0);
    CHECK(buffer.states().data()[42 * 3 + 2] == 9.0);
    CHECK(buffer.states().data()[8 * 3] == 0.0);
    CHECK_THROWS_WITH_AS(buffer.push({100}, Tensor<double>::zeros(Shape{1, 3})), doctest::Contains("outside"), Error);
    CHECK_THROWS_WITH_AS(buffer.push({1}, Tensor<double>::zeros(Shape{1, 4})), doctest::Contains("[1,3]"), Error);
    CHECK_THROWS_AS(sample::ReplayBuffer<double>(10, init, g, 1.5), Error);
}

TEST_CASE("sample: latent energy U(G(z)) + |z|^2/2 and its gradient, parameters untouched") {
    Generator g(61);
    nn::Linear<double> G(3, 4, g);
    const auto U = [](const V& x) { return V(0.5 * sum(V(x * x), 1)); };
    const Tensor<double> z = normal<double>(Shape{5, 3}, g);
    const Tensor<double> W = G.weight().value(), b = G.bias().value();
    for (bool prior : {true, false}) {
        CAPTURE(prior);
        const auto uz = sample::latent_energy<double>(std::ref(G), U, prior);
        const sample::EnergyGrad<double> e = sample::energy_and_grad(uz, z);
        for (Index i = 0; i < 5; ++i) {
            // x = W z + b; U_z = ½|x|² (+ ½|z|²); ∇U_z = Wᵀ x (+ z).
            std::vector<double> x(4, 0.0);
            double expected = 0;
            for (Index o = 0; o < 4; ++o) {
                x[o] = b.data()[o];
                for (Index k = 0; k < 3; ++k) x[o] += W.data()[o * 3 + k] * z.data()[i * 3 + k];
                expected += 0.5 * x[o] * x[o];
            }
            for (Index k = 0; k < 3; ++k) {
                double gk = prior ? z.data()[i * 3 + k] : 0.0;
                for (Index o = 0; o < 4; ++o) gk += W.data()[o * 3 + k] * x[o];
                CHECK(e.grad.data()[i * 3 + k] == doctest::Approx(gk).epsilon(1e-12));
                if (prior) expected += 0.5 * z.data()[i * 3 + k] * z.data()[i * 3 + k];
            }
            CHECK(e.energy.data()[i] == doctest::Approx(expected).epsilon(1e-12));
        }
    }
    CHECK_FALSE(G.weight().grad().defined());  // sampling never writes parameter gradients
    CHECK_FALSE(G.bias().grad().defined());
}

TEST_CASE("sample: bad energies and settings give clear errors") {
    const auto U = [](const V& x) { return V(0.5 * sum(V(x * x), 1)); };
    const Tensor<double> x = Tensor<double>::zeros(Shape{4, 2});
    CHECK_THROWS_WITH_AS(sample::Mala<double>([](const V& v) { return v; }, x), doctest::Contains("one value per sample"),
                         Error);
    CHECK_THROWS_WITH_AS(sample::Mala<double>(U, x, {.step_size = -1}), doctest::Contains("step size"), Error);
    CHECK_THROWS_WITH_AS(sample::Hmc<double>(U, x, {.leapfrog_steps = 0}), doctest::Contains("leapfrog_steps"), Error);
    CHECK_THROWS_WITH_AS(sample::Mala<double>(U, Tensor<double>::zeros(Shape{0, 2})), doctest::Contains("non-empty"), Error);
    Tensor<double> bad = x.clone();
    bad.data()[5] = NAN;
    CHECK_THROWS_WITH_AS(sample::Mala<double>(U, bad), doctest::Contains("chain 2"), Error);
    sample::Mala<double> m(U, x);
    CHECK_THROWS_WITH_AS(m.set_state(Tensor<double>::zeros(Shape{3, 2})), doctest::Contains("[4,2]"), Error);
    CHECK_THROWS_WITH_AS(m.run(-1), doctest::Contains("steps"), Error);
    // Unadjusted Langevin cannot reject: a step out of the region where U is finite
    // (|x| < 1 for the barrier U = -log(1 - x²)) stops with an error.
    const auto barrier = [](const V& v) { return V(-sum(V(log(V(1.0 - v * v))), 1)); };
    sample::Langevin<double> ula(barrier, Tensor<double>::full(Shape{8, 1}, 0.5), {.step_size = 1.0, .seed = 1});
    CHECK_THROWS_WITH_AS(ula.run(20), doctest::Contains("not finite"), Error);
    // MALA and HMC reject such proposals and count them.
    sample::Mala<double> mala(barrier, Tensor<double>::full(Shape{8, 1}, 0.5), {.step_size = 1.0, .seed = 1});
    const auto st = mala.run(20);
    CHECK(st.nonfinite > 0);
    for (double v : mala.state().to_vector()) CHECK(std::abs(v) < 1);
}

TEST_CASE("sample: samplers work inside NoGrad") {
    const auto U = [](const V& x) { return V(0.5 * sum(V(x * x), 1)); };
    NoGrad no_grad;
    sample::Hmc<double> h(U, Tensor<double>::ones(Shape{2, 2}), {.step_size = 0.2, .leapfrog_steps = 3});
    h.run(5);
    CHECK(h.gradients().to_vector() == h.state().to_vector());  // ∇U = x, computed despite NoGrad
    CHECK_FALSE(grad_enabled());
}

// parallel_chains: one graph per thread on disjoint groups of chains, parameters shared and
// still requiring grad. Results must equal the one-graph ones up to rounding (double: the
// two differ only in the order of a few sums), the parameters must get no gradient and no
// leftover from the walks (the next backward() must be exact), and an error thrown inside
// one group must come out of the call.
TEST_CASE("sample: parallel_chains evaluates groups of chains on separate threads with the one-graph result") {
    const int saved_threads = num_threads();
    set_num_threads(2);
    Generator g(71);
    nn::Sequential<double> net;
    net.add<nn::Linear>(6, 16, g);
    net.add<nn::Tanh>();
    net.add<nn::Linear>(16, 1, g);
    const sample::EnergyFn<double> U = std::ref(net);
    const Tensor<double> x = normal<double>(Shape{40, 6}, g);
    const sample::EnergyGrad<double> one = sample::energy_and_grad(U, x);
    for (int rep = 0; rep < 20; ++rep) {  // repeated: a race between the two walks would show
        const sample::EnergyGrad<double> split = sample::energy_and_grad(U, x, "test", true);
        REQUIRE(split.energy.shape() == one.energy.shape());
        REQUIRE(split.grad.shape() == x.shape());
        double worst = 0;
        for (Index i = 0; i < one.energy.numel(); ++i)
            worst = std::max(worst, std::abs(split.energy.data()[i] - one.energy.data()[i]));
        for (Index i = 0; i < x.numel(); ++i) worst = std::max(worst, std::abs(split.grad.data()[i] - one.grad.data()[i]));
        CHECK(worst < 1e-12);
    }
    for (const auto& [name, p] : net.named_parameters()) CHECK_FALSE(p.grad().defined());
    // A training backward after the sampling walks gets exactly the gradient of its own loss.
    const V loss = sum(net(V(x)));
    loss.backward();
    const Tensor<double> w2 = net.named_parameters().back().second.grad();  // last bias: d sum / db = N
    CHECK(w2.data()[0] == doctest::Approx(40.0).epsilon(1e-12));

    // The samplers give the same chains with and without it (double precision, so no
    // accept decision can flip on rounding).
    sample::Mala<double> a(U, x, {.step_size = 0.05, .seed = 5});
    sample::Mala<double> b(U, x, {.step_size = 0.05, .seed = 5, .parallel_chains = true});
    a.run(10);
    b.run(10);
    double worst = 0;
    for (Index i = 0; i < x.numel(); ++i) worst = std::max(worst, std::abs(a.state().data()[i] - b.state().data()[i]));
    CHECK(worst < 1e-10);

    // SGLD moves each group's chains on the thread that evaluated them, with that group's
    // part of one draw of noise: the same chains and statistics as one graph, and a chain
    // whose energy is not finite is named by its index in the whole batch.
    sample::SgldStats one_stats, split_stats;
    const Tensor<double> sgld_one = sample::sgld(U, x, {.step_size = 0.01, .noise = 0.1, .steps = 5, .clamp_min = -1.5, .clamp_max = 1.5},
                                                 *std::make_unique<Generator>(9), &one_stats);
    const Tensor<double> sgld_split =
        sample::sgld(U, x, {.step_size = 0.01, .noise = 0.1, .steps = 5, .clamp_min = -1.5, .clamp_max = 1.5, .parallel_chains = true},
                     *std::make_unique<Generator>(9), &split_stats);
    worst = 0;
    for (Index i = 0; i < x.numel(); ++i) worst = std::max(worst, std::abs(sgld_one.data()[i] - sgld_split.data()[i]));
    CHECK(worst < 1e-12);
    CHECK(split_stats.mean_energy_end == doctest::Approx(one_stats.mean_energy_end).epsilon(1e-12));
    CHECK(split_stats.mean_grad_norm == doctest::Approx(one_stats.mean_grad_norm).epsilon(1e-12));
    const sample::EnergyFn<double> infinite_at_chains_25_and_30 = [&](const V& v) {
        Tensor<double> bump = Tensor<double>::zeros(Shape{v.dim(0), 1});
        for (Index i = 0; i < v.dim(0); ++i)
            for (Index bad : {25, 30})
                if (v.value().data()[i * 6] == x.data()[bad * 6]) bump.data()[i] = std::numeric_limits<double>::infinity();
        return V(net(v) + bump);
    };
    for (bool parallel : {false, true}) {
        Generator gen(3);
        CHECK_THROWS_WITH_AS(sample::sgld(infinite_at_chains_25_and_30, x, {.steps = 1, .parallel_chains = parallel}, gen),
                             doctest::Contains("not finite for chain 25 during SGLD"), Error);
        CHECK(gen.offset() == 0);  // no noise was drawn
    }

    const sample::EnergyFn<double> fails_on_last_group = [&](const V& v) {
        EMBER_CHECK(v.value().data()[(v.dim(0) - 1) * 6] != x.data()[39 * 6], "test energy", "refuses the last chain");
        return net(v);
    };
    CHECK_THROWS_WITH_AS(sample::energy_and_grad(fails_on_last_group, x, "test", true),
                         doctest::Contains("refuses the last chain"), Error);
    set_num_threads(saved_threads);
}
