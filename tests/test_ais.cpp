// Annealed importance sampling (include/ember/sample/ais.hpp), tested against normalisers
// known in closed form, with fixed seeds.
//
// Tolerances come from the estimators' own error bars:
//  * Forward AIS is unbiased for Z, so log Ẑ is a stochastic lower bound: it may exceed
//    log Z only by noise, log Ẑ ≤ log Z + 4 SE (SE the delta-method standard error; a 4σ
//    band, 3e-5 one-sided per check).
//  * Reverse AIS is unbiased for 1/Z: its estimate may fall below log Z only by noise,
//    log Ẑ_rev ≥ log Z - 4 SE_rev.
//  * Together (bidirectional Monte Carlo) log Z lies in [fwd - 4 SE, rev + 4 SE], and the
//    gap rev - fwd, which bounds both biases, shrinks as the path gets more stages (it
//    falls like 1/K for long paths: a 20 times longer path must shrink it at least 4 times).
//  * The delta-method SE is trusted only where the weights' ESS is at least a quarter of
//    the chains, which each test checks first.
#include <doctest/doctest.h>

#include <cmath>
#include <ember/ember.hpp>
#include <numbers>
#include <vector>

#include "harness.hpp"

using namespace ember;
using test::OneThread;

namespace {

using V = Var<double>;
using Td = Tensor<double>;

// The Gaussian N(μ, L Lᵀ) in d dimensions as an unnormalised energy U(x) = ½ |L⁻¹(x - μ)|²,
// with Z = (2π)^(d/2) |det L| and exact draws μ + L ε. L is lower triangular.
struct Gaussian {
    Td mean;      // [1, d]
    Td l;         // L, [d, d]
    Td l_inv_t;   // (L⁻¹)ᵀ, [d, d]: x rows times it give rows of L⁻¹ x
    double log_z;

    sample::EnergyFn<double> energy() const {
        return [m = mean, a = l_inv_t](const V& x) { return V(0.5 * sum(V(square(matmul(V(x - V(m)), V(a)))), 1)); };
    }
    Td sample(Index n, Generator& gen) const {
        const Td e = normal<double>(Shape{n, mean.dim(1)}, gen);
        return Td(matmul(V(e), V(l.transpose(0, 1).contiguous())).value() + mean);
    }
};

// Diagonal L = diag(scales), mean `mu` in every coordinate.
Gaussian diagonal_gaussian(const std::vector<double>& scales, double mu) {
    const Index d = static_cast<Index>(scales.size());
    Gaussian g{Td::full(Shape{1, d}, mu), Td::zeros(Shape{d, d}), Td::zeros(Shape{d, d}),
               0.5 * static_cast<double>(d) * std::log(2 * std::numbers::pi)};
    for (Index i = 0; i < d; ++i) {
        g.l.data()[i * d + i] = scales[static_cast<std::size_t>(i)];
        g.l_inv_t.data()[i * d + i] = 1 / scales[static_cast<std::size_t>(i)];
        g.log_z += std::log(scales[static_cast<std::size_t>(i)]);
    }
    return g;
}

// 2-D with L = [[1, 0], [0.9, 0.3]]: correlation 0.95, |det L| = 0.3.
Gaussian correlated_gaussian_2d() {
    Gaussian g{Td::from(Shape{1, 2}, {1.0, -0.5}), Td::from(Shape{2, 2}, {1.0, 0.0, 0.9, 0.3}),
               // L⁻¹ = [[1, 0], [-3, 1/0.3]], transposed
               Td::from(Shape{2, 2}, {1.0, -3.0, 0.0, 1 / 0.3}), std::log(2 * std::numbers::pi) + std::log(0.3)};
    return g;
}

struct Sandwich {
    sample::AisResult forward, reverse;
    double gap() const { return reverse.log_z - forward.log_z; }
};

Sandwich sandwich(const sample::EnergyFn<double>& energy, const Td& exact, const sample::AisBase<double>& base,
                  sample::AisOptions o) {
    Sandwich s;
    s.forward = sample::ais<double>(energy, exact.dim(0), base, o);
    o.step_sizes = s.forward.step_sizes;  // the same steps both ways
    o.seed += 1;
    s.reverse = sample::reverse_ais<double>(energy, exact, base, o);
    return s;
}

// The checks of the file description on one sandwich.
void check_sandwich(const Sandwich& s, double log_z, Index chains) {
    MESSAGE("log Z = ", log_z, ": forward ", s.forward.log_z, " ± ", s.forward.stderr_log_z, " (bootstrap ",
            s.forward.stderr_bootstrap, ", ESS ", s.forward.ess, "), reverse ", s.reverse.log_z, " ± ",
            s.reverse.stderr_log_z, " (ESS ", s.reverse.ess, ")");
    const double n = static_cast<double>(chains);
    REQUIRE(s.forward.ess >= n / 4);
    REQUIRE(s.reverse.ess >= n / 4);
    CHECK(s.forward.log_z <= log_z + 4 * s.forward.stderr_log_z);
    CHECK(s.reverse.log_z >= log_z - 4 * s.reverse.stderr_log_z);
    CHECK(log_z >= s.forward.log_z - 4 * s.forward.stderr_log_z);
    CHECK(log_z <= s.reverse.log_z + 4 * s.reverse.stderr_log_z);
    // The bootstrap and the delta method estimate the same spread.
    CHECK(s.forward.stderr_bootstrap == doctest::Approx(s.forward.stderr_log_z).epsilon(0.5));
}

}  // namespace

TEST_CASE("sigmoid schedule: from 0 to 1, increasing, symmetric") {
    OneThread one_thread;  // tiny batches
    const std::vector<double> b = sample::sigmoid_schedule(100);
    REQUIRE(b.size() == 101);
    CHECK(b.front() == 0);
    CHECK(b.back() == 1);
    for (std::size_t k = 1; k < b.size(); ++k) CHECK(b[k] > b[k - 1]);
    for (std::size_t k = 0; k < b.size(); ++k) CHECK(b[k] + b[100 - k] == doctest::Approx(1).epsilon(1e-12));
    // Steps near the ends are smaller than in the middle.
    CHECK(b[1] - b[0] < b[51] - b[50]);
    CHECK_THROWS_WITH_AS(sample::sigmoid_schedule(0), doctest::Contains("stages must be >= 1"), Error);
}

TEST_CASE("log_weight_stats: log mean, standard errors and ESS of known weights") {
    OneThread one_thread;  // tiny batches
    Generator gen(1);
    // Weights 1 and 3 (shifted by 1000, which the log-sum-exp must survive): mean 2, sd √2,
    // SE of log mean = √2 / √2 / 2 = 0.5, ESS = 4² / 10.
    const auto s = sample::log_weight_stats({1000.0, 1000 + std::log(3.0)}, 0, gen);
    CHECK(s.log_mean == doctest::Approx(1000 + std::log(2.0)).epsilon(1e-15));
    CHECK(s.stderr_delta == doctest::Approx(0.5).epsilon(1e-12));
    CHECK(s.ess == doctest::Approx(1.6).epsilon(1e-12));
    // Equal weights: no spread, ESS = n; a zero weight (-inf) counts as zero.
    const auto e = sample::log_weight_stats({-2.0, -2.0, -2.0, -2.0}, 200, gen);
    CHECK(e.log_mean == doctest::Approx(-2).epsilon(1e-15));
    CHECK(e.stderr_delta == 0);
    CHECK(e.stderr_bootstrap == doctest::Approx(0).scale(1).epsilon(1e-12));
    CHECK(e.ess == doctest::Approx(4).epsilon(1e-12));
    const auto z = sample::log_weight_stats({0.0, -INFINITY}, 0, gen);
    CHECK(z.log_mean == doctest::Approx(std::log(0.5)).epsilon(1e-15));
    CHECK(z.ess == doctest::Approx(1).epsilon(1e-15));
    CHECK_THROWS_WITH_AS(sample::log_weight_stats({0.0, NAN}, 0, gen), doctest::Contains("NaN"), Error);
}

TEST_CASE("AIS sandwiches log Z of Gaussians in 1, 2 and 50 dimensions") {
    OneThread one_thread;  // tiny batches
    const Index n = 500;
    SUBCASE("1-D, N(1.5, 0.5²)") {
        const Gaussian g = diagonal_gaussian({0.5}, 1.5);
        Generator gen(1);
        check_sandwich(sandwich(g.energy(), g.sample(n, gen), sample::normal_base<double>(Shape{1}),
                                {.stages = 200, .seed = 2}),
                       g.log_z, n);
    }
    SUBCASE("2-D, correlation 0.95") {
        const Gaussian g = correlated_gaussian_2d();
        Generator gen(3);
        check_sandwich(sandwich(g.energy(), g.sample(n, gen), sample::normal_base<double>(Shape{2}),
                                {.stages = 300, .seed = 4}),
                       g.log_z, n);
    }
    SUBCASE("50-D, scales 0.7 to 1.4, MALA and HMC") {
        std::vector<double> scales;
        for (int i = 0; i < 50; ++i) scales.push_back(0.7 * std::pow(2.0, i / 49.0));
        const Gaussian g = diagonal_gaussian(scales, 1.0);
        Generator gen(5);
        const Td exact = g.sample(n / 2, gen);
        const Sandwich mala = sandwich(g.energy(), exact, sample::normal_base<double>(Shape{50}),
                                       {.stages = 1000, .seed = 6});
        check_sandwich(mala, g.log_z, n / 2);
        // The warm-up pass adapted the steps toward MALA's 0.574.
        double accept = 0;
        for (std::size_t k = 0; k + 1 < mala.forward.acceptance.size(); ++k) accept += mala.forward.acceptance[k];
        accept /= static_cast<double>(mala.forward.acceptance.size() - 1);
        MESSAGE("mean acceptance over the stages ", accept);
        CHECK(accept == doctest::Approx(0.574).epsilon(0.15));
        CHECK(std::isnan(mala.forward.acceptance.back()));
        const Sandwich hmc = sandwich(g.energy(), exact, sample::normal_base<double>(Shape{50}),
                                      {.stages = 400, .kernel = sample::AisKernel::hmc, .leapfrog_steps = 5, .seed = 7});
        check_sandwich(hmc, g.log_z, n / 2);
    }
}

TEST_CASE("AIS: the sandwich closes as the path gets longer") {
    OneThread one_thread;  // tiny batches
    const Gaussian g = diagonal_gaussian(std::vector<double>(10, 0.5), 1.0);
    Generator gen(8);
    const Index n = 400;
    const Td exact = g.sample(n, gen);
    const auto base = sample::normal_base<double>(Shape{10});
    const Sandwich short_path = sandwich(g.energy(), exact, base, {.stages = 10, .seed = 9});
    const Sandwich long_path = sandwich(g.energy(), exact, base, {.stages = 200, .seed = 9});
    MESSAGE("gap with 10 stages ", short_path.gap(), ", with 200 stages ", long_path.gap());
    CHECK(short_path.forward.log_z <= g.log_z + 4 * short_path.forward.stderr_log_z);
    CHECK(short_path.reverse.log_z >= g.log_z - 4 * short_path.reverse.stderr_log_z);
    CHECK(short_path.gap() > 0);
    CHECK(long_path.gap() < short_path.gap() / 4);
    check_sandwich(long_path, g.log_z, n);
}

// Two well separated modes, ½ N((3, 3), I) + ½ N((-3, -3), I): U = -log of the mixture
// without its 1/(2π), so Z = 2π. The chains cannot cross between the modes at β = 1; the
// weights must still count both.
TEST_CASE("AIS on a two-mode mixture") {
    OneThread one_thread;  // tiny batches
    const double m = 3;
    auto energy = [m](const V& x) {
        const Td shift = Td::full(Shape{1, 2}, m);
        const V a = V(-0.5 * sum(V(square(V(x - V(shift)))), 1, true));
        const V b = V(-0.5 * sum(V(square(V(x + V(shift)))), 1, true));
        return V(std::log(2.0) - logsumexp(concat<double>({a, b}, 1), 1));
    };
    const Index n = 500;
    Generator gen(10);
    Td exact = normal<double>(Shape{n, 2}, gen);
    for (Index i = 0; i < n; ++i) {
        const double side = gen.uniform01() < 0.5 ? m : -m;
        exact.data()[2 * i] += side, exact.data()[2 * i + 1] += side;
    }
    const Sandwich s = sandwich(energy, exact, sample::normal_base<double>(Shape{2}, 2.0), {.stages = 300, .seed = 11});
    check_sandwich(s, std::log(2 * std::numbers::pi), n);
}

// A normalising flow's density is exact: -log p_flow as an energy has Z = 1, and the
// log-likelihood from AIS's log Z must equal the flow's own.
TEST_CASE("AIS recovers log Z = 0 of a trained flow, and its exact log-likelihood") {
    OneThread one_thread;  // tiny batches
    Generator gen(12);
    flow::Flow<double> f(Shape{2});
    f.add<flow::ActNorm>(2);
    for (int k = 0; k < 4; ++k) f.add(flow::affine_coupling_mlp<double>(2, 16, k % 2 == 1, gen));
    // A banana, x₂ = x₁² - 1 + noise: trained for a few hundred steps, far from Gaussian.
    auto banana = [](Index n, Generator& g) {
        Td x = normal<double>(Shape{n, 2}, g);
        for (Index i = 0; i < n; ++i) x.data()[2 * i + 1] = x.data()[2 * i] * x.data()[2 * i] - 1 + 0.5 * x.data()[2 * i + 1];
        return x;
    };
    f(V(banana(512, gen)));  // ActNorm's data-dependent initialisation
    Adam<double> opt(f.parameters(), {.lr = 3e-3});
    for (int step = 0; step < 300; ++step) {
        opt.zero_grad();
        mean(V(-f.log_prob(V(banana(256, gen))))).backward();
        opt.step();
    }
    auto energy = [&f](const V& x) { return V(-f.log_prob(x)); };

    const Index n = 400;
    Td exact;
    {
        NoGrad no_grad;
        exact = f.sample(n, gen).value();
    }
    const Sandwich s = sandwich(energy, exact, sample::normal_base<double>(Shape{2}, 2.0), {.stages = 300, .seed = 13});
    check_sandwich(s, 0.0, n);

    const Td test = banana(1000, gen);
    const sample::LogLikelihood ll = sample::log_likelihood<double>(energy, test, s.forward);
    double exact_mean = 0;
    {
        NoGrad no_grad;
        const Td lp = f.log_prob(V(test)).value();
        for (Index i = 0; i < test.dim(0); ++i) exact_mean += lp.data()[i];
        exact_mean /= static_cast<double>(test.dim(0));
        CHECK(ll.per_point[7] == doctest::Approx(lp.data()[7] - s.forward.log_z).epsilon(1e-12));
    }
    MESSAGE("test log-likelihood: AIS ", ll.mean, " ± ", ll.stderr_log_z, " (points ± ", ll.stderr_points,
            "), exact ", exact_mean);
    // The same points on both sides: only log Ẑ's error separates them.
    CHECK(std::abs(ll.mean - exact_mean) <= 4 * ll.stderr_log_z);
    CHECK(ll.stderr_log_z == s.forward.stderr_log_z);
}

TEST_CASE("AIS: clear errors for bad schedules, steps, energies and sizes") {
    OneThread one_thread;  // tiny batches
    const auto base = sample::normal_base<double>(Shape{2});
    auto quadratic = [](const V& x) { return V(0.5 * sum(V(square(x)), 1)); };
    CHECK_THROWS_WITH_AS(sample::ais<double>(quadratic, 10, base, {.betas = {0, 0.5, 0.4, 1}}),
                         doctest::Contains("ais: the schedule must increase strictly, but beta[2] = 0.4 follows 0.5"),
                         Error);
    CHECK_THROWS_WITH_AS(sample::ais<double>(quadratic, 10, base, {.betas = {0.1, 1}}),
                         doctest::Contains("must start at 0 and end at 1"), Error);
    CHECK_THROWS_WITH_AS(sample::ais<double>(quadratic, 10, base, {.stages = 4, .step_sizes = {0.1, 0.1}}),
                         doctest::Contains("expected 4 step sizes (one per stage), got 2"), Error);
    CHECK_THROWS_WITH_AS(sample::ais<double>(quadratic, 1, base), doctest::Contains("at least 2 chains"), Error);
    auto nan_energy = [](const V& x) { return V(sum(V(log(x)), 1)); };  // NaN at negative coordinates
    CHECK_THROWS_WITH_AS(sample::ais<double>(nan_energy, 10, base, {.stages = 3}),
                         doctest::Contains("ais: the target energy is NaN for chain"), Error);
    CHECK_THROWS_WITH_AS(sample::reverse_ais<double>(quadratic, Td::zeros(Shape{1, 2}), base),
                         doctest::Contains("at least 2 exact samples"), Error);
    CHECK_THROWS_WITH_AS(sample::normal_base<double>(Shape{2}, -1), doctest::Contains("scale must be positive"), Error);
}

// U = ½|x|² on the half-plane x₁ ≥ 0 and +inf elsewhere: Z = 2π / 2. The base draws on the
// wrong side get weight 0, and proposals there are rejected. Reverse AIS then estimates
// log Z minus the log of the base's mass on the target's support (½ here): its bound,
// log 2π, holds but is loose by log 2, and its weights are all equal (U - U0 is constant on
// the half-plane).
TEST_CASE("AIS: states of zero density (U = +inf) get zero weight") {
    OneThread one_thread;  // tiny batches
    auto half_plane = [](const V& x) {
        Td wall = Td::zeros(Shape{x.dim(0)});
        for (Index i = 0; i < x.dim(0); ++i)
            if (x.value().data()[2 * i] < 0) wall.data()[i] = INFINITY;
        return V(0.5 * sum(V(square(x)), 1) + V(wall));
    };
    const Index n = 500;
    Generator gen(14);
    Td exact = normal<double>(Shape{n, 2}, gen);
    for (Index i = 0; i < n; ++i) exact.data()[2 * i] = std::abs(exact.data()[2 * i]);
    const Sandwich s = sandwich(half_plane, exact, sample::normal_base<double>(Shape{2}), {.stages = 100, .seed = 15});
    check_sandwich(s, std::log(std::numbers::pi), n);
    CHECK(s.reverse.log_z == doctest::Approx(std::log(2 * std::numbers::pi)).epsilon(1e-12));
}
