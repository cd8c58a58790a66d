// Mode-coverage metrics (eval/mode_coverage.hpp) on hand-computed cases: nearest-mode
// assignment, the 3σ high-quality radius (inclusive), covered modes, the share of
// high-quality samples and the reverse KL of the mode histogram against uniform.
#include <doctest/doctest.h>

#include <cmath>
#include <ember/ember.hpp>
#include <ember/eval/mode_coverage.hpp>
#include <limits>
#include <vector>

using namespace ember;

namespace {
// Two modes at (0,0) and (10,0) with σ = 1: the high-quality radius is exactly 3.
ToyModes two_modes() { return ToyModes{{{0.0, 0.0}, {10.0, 0.0}}, 1.0}; }

Tensor<double> points(const std::vector<double>& xy) {
    return Tensor<double>::from(Shape{static_cast<Index>(xy.size() / 2), 2}, xy);
}
}  // namespace

TEST_CASE("mode_coverage: nearest mode, 3-sigma radius, histogram and reverse KL by hand") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // (0.5,0): mode 0, HQ. (3,0): mode 0 at exactly 3σ, HQ (the radius is inclusive).
    // (3.1,0): mode 0, not HQ. (9,0): mode 1, HQ. (5,0): equidistant, goes to the first
    // listed mode (0), not HQ. (NaN,0): no mode, not HQ, but counted in N.
    const Tensor<double> s = points({0.5, 0, 3, 0, 3.1, 0, 9, 0, 5, 0, nan, 0});
    const ModeCoverage m = mode_coverage(s, two_modes());
    CHECK(m.samples == 6);
    CHECK(m.modes == 2);
    CHECK(m.counts == std::vector<Index>{2, 1});
    CHECK(m.nearest == std::vector<Index>{0, 0, 0, 1, 0, -1});
    CHECK(m.high_quality == 3);
    CHECK(m.modes_covered == 2);
    CHECK(m.high_quality_share == doctest::Approx(0.5).epsilon(1e-15));
    // q = (2/3, 1/3) against (1/2, 1/2): (2/3) log(4/3) + (1/3) log(2/3) = 0.0566330...
    const double kl = 2.0 / 3 * std::log(4.0 / 3) + 1.0 / 3 * std::log(2.0 / 3);
    CHECK(m.reverse_kl == doctest::Approx(kl).epsilon(1e-14));
    CHECK(m.reverse_kl == doctest::Approx(0.0566330122651).epsilon(1e-9));

    // The same samples in float give the same answer.
    const std::vector<double> v = s.to_vector();
    const ModeCoverage mf =
        mode_coverage(Tensor<float>::from(s.shape(), std::vector<float>(v.begin(), v.end())), two_modes());
    CHECK(mf.counts == m.counts);
    CHECK(mf.modes_covered == 2);

    // min_count = 2: mode 1 has a single high-quality sample, so it is not covered.
    CHECK(mode_coverage(s, two_modes(), {.min_count = 2}).modes_covered == 1);
    // A radius of 2σ drops (3,0): counts (1, 1), balanced, KL 0.
    const ModeCoverage r2 = mode_coverage(s, two_modes(), {.radius_in_std = 2.0});
    CHECK(r2.counts == std::vector<Index>{1, 1});
    CHECK(r2.reverse_kl == 0.0);
}

TEST_CASE("mode_coverage: the 25-Gaussian grid and the 8-Gaussian ring") {
    const ToyModes grid = grid25_modes();
    // One sample on every centre, moved by 2.9σ along x: 25/25 modes, all high-quality, KL 0.
    std::vector<double> xy;
    for (const auto& [cx, cy] : grid.centres) xy.push_back(cx + 2.9 * grid.std), xy.push_back(cy);
    ModeCoverage m = mode_coverage(points(xy), grid);
    CHECK(m.modes == 25);
    CHECK(m.modes_covered == 25);
    CHECK(m.high_quality_share == 1.0);
    CHECK(m.reverse_kl == doctest::Approx(0.0).epsilon(1e-15));

    // Two samples on each of 5 centres and 3 far off every centre: 5 modes covered, 10/13
    // high-quality, q uniform on 5 of 25 modes: KL = log(25/5) = log 5.
    xy.clear();
    for (int k = 0; k < 5; ++k)
        for (int rep = 0; rep < 2; ++rep) xy.push_back(grid.centres[static_cast<std::size_t>(k)][0]), xy.push_back(grid.centres[static_cast<std::size_t>(k)][1]);
    for (double v : {1.0, 3.0, -1.0}) xy.push_back(v), xy.push_back(v);  // between modes
    m = mode_coverage(points(xy), grid);
    CHECK(m.modes_covered == 5);
    CHECK(m.high_quality == 10);
    CHECK(m.high_quality_share == doctest::Approx(10.0 / 13).epsilon(1e-15));
    CHECK(m.reverse_kl == doctest::Approx(std::log(5.0)).epsilon(1e-14));

    // Mode collapse on the ring: every sample at the centre of mode 3, KL = log 8.
    const ToyModes ring = ring8_modes();
    xy.clear();
    for (int i = 0; i < 100; ++i) xy.push_back(ring.centres[3][0]), xy.push_back(ring.centres[3][1]);
    m = mode_coverage(points(xy), ring);
    CHECK(m.modes == 8);
    CHECK(m.modes_covered == 1);
    CHECK(m.counts[3] == 100);
    CHECK(m.reverse_kl == doctest::Approx(std::log(8.0)).epsilon(1e-14));

    // True samples of the target: every mode covered, about 98.9% within 3σ (for a 2-D
    // Gaussian P(r <= 3σ) = 1 - e^{-4.5} = 0.98889), KL small.
    Generator gen(7);
    const Tensor<float> target = sample_toy2d<float>(Toy2d::grid25, 2500, gen);
    m = mode_coverage(target, grid);
    CHECK(m.modes_covered == 25);
    CHECK(m.high_quality_share > 0.97);
    CHECK(m.reverse_kl < 0.05);
}

TEST_CASE("mode_coverage: no high-quality sample, the KL helper and bad input") {
    // Everything far away: nothing covered, share 0, KL undefined (NaN).
    const ModeCoverage m = mode_coverage(points({50, 50, -50, 3}), two_modes());
    CHECK(m.modes_covered == 0);
    CHECK(m.high_quality == 0);
    CHECK(m.high_quality_share == 0.0);
    CHECK(std::isnan(m.reverse_kl));
    // An empty batch: N = 0, share 0.
    const ModeCoverage e = mode_coverage(Tensor<double>::zeros(Shape{0, 2}), two_modes());
    CHECK(e.samples == 0);
    CHECK(e.high_quality_share == 0.0);

    // KL(q || uniform) straight from counts: (3, 1, 0, 0) -> q = (3/4, 1/4, 0, 0) against 1/4:
    // (3/4) log 3 + (1/4) log 1 = 0.8239592...
    CHECK(reverse_kl_to_uniform({3, 1, 0, 0}) == doctest::Approx(0.75 * std::log(3.0)).epsilon(1e-14));
    CHECK(reverse_kl_to_uniform({7, 7, 7}) == 0.0);
    CHECK(std::isnan(reverse_kl_to_uniform({0, 0})));
    CHECK_THROWS_AS(reverse_kl_to_uniform({}), Error);
    CHECK_THROWS_AS(reverse_kl_to_uniform({1, -1}), Error);

    CHECK_THROWS_WITH_AS(mode_coverage(Tensor<double>::zeros(Shape{4, 3}), two_modes()),
                         doctest::Contains("expected samples of shape [N, 2]"), Error);
    CHECK_THROWS_AS(mode_coverage(points({0, 0}), ToyModes{{}, 1.0}), Error);
    CHECK_THROWS_AS(mode_coverage(points({0, 0}), ToyModes{{{0.0, 0.0}}, 0.0}), Error);
    CHECK_THROWS_AS(mode_coverage(points({0, 0}), two_modes(), {.radius_in_std = 0}), Error);
    CHECK_THROWS_AS(mode_coverage(points({0, 0}), two_modes(), {.min_count = 0}), Error);
}
