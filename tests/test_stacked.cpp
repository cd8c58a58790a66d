// StackedMNIST: the data view (data/stacked.hpp) stacks the images it draws and numbers
// their modes; the evaluator (eval/stacked_modes.hpp) gives the known answers for collapsed
// sets and the finite-sample floor for uniformly spread ones.
#include <doctest/doctest.h>

#include <cmath>
#include <ember/ember.hpp>
#include <ember/eval/stacked_modes.hpp>
#include <vector>

using namespace ember;

namespace {

// Probabilities [N, 3, 10] that put `p` on the digits of each mode and the rest evenly on
// the other nine digits.
Tensor<double> probabilities(const std::vector<Index>& modes, double p) {
    const Index n = static_cast<Index>(modes.size());
    Tensor<double> t = Tensor<double>::full(Shape{n, 3, 10}, (1 - p) / 9);
    for (Index i = 0; i < n; ++i) {
        const Index m = modes[static_cast<std::size_t>(i)];
        const Index d[3] = {m / 100, m / 10 % 10, m % 10};
        for (Index c = 0; c < 3; ++c) t.data()[(i * 3 + c) * 10 + d[c]] = p;
    }
    return t;
}

}  // namespace

TEST_CASE("draw_stacked: three drawn images in the channels, their digits as the mode") {
    // 20 images of 2x2 pixels, every pixel of image j equal to j, with label j % 10.
    ImageSet set{Tensor<float>::empty(Shape{20, 1, 2, 2}), {}};
    for (Index j = 0; j < 20; ++j) {
        for (Index k = 0; k < 4; ++k) set.images.data()[j * 4 + k] = static_cast<float>(j);
        set.labels.push_back(j % 10);
    }
    Generator a(3), b(3);
    const StackedBatch batch = draw_stacked(set, 50, a);
    CHECK(batch.images.shape() == Shape{50, 3, 2, 2});
    for (Index i = 0; i < 50; ++i) {
        Index mode = 0;
        for (Index c = 0; c < 3; ++c) {
            const float* plane = batch.images.data() + (i * 3 + c) * 4;
            const Index j = static_cast<Index>(plane[0]);
            CHECK((plane[1] == plane[0] && plane[2] == plane[0] && plane[3] == plane[0]));  // one whole source image
            mode = 10 * mode + j % 10;
        }
        CHECK(batch.modes[static_cast<std::size_t>(i)] == mode);
    }
    CHECK(draw_stacked(set, 50, b).modes == batch.modes);  // reproducible from the seed
    set.labels[4] = 10;
    CHECK_THROWS_WITH_AS(draw_stacked(set, 5, a), doctest::Contains("label 10 is not a digit"), Error);
    CHECK_THROWS_WITH_AS(draw_stacked(ImageSet{Tensor<float>::zeros({4, 3, 2, 2}), {0, 1, 2, 3}}, 5, a),
                         doctest::Contains("single-channel images"), Error);
}

TEST_CASE("stacked_modes: collapsed sets give their known answers") {
    SUBCASE("one mode") {
        const StackedModes m = stacked_modes(probabilities(std::vector<Index>(500, 374), 0.99));
        CHECK(m.samples == 500);
        CHECK(m.modes == 1);
        CHECK(m.modes_any == 1);
        CHECK(m.kl == doctest::Approx(std::log(1000.0)).epsilon(1e-12));
        for (double k : m.channel_kl) CHECK(k == doctest::Approx(std::log(10.0)).epsilon(1e-12));
        CHECK(m.confident_share == 1.0);
    }
    SUBCASE("ten modes, equally often: KL = log(1000 / 10)") {
        std::vector<Index> modes;
        for (int rep = 0; rep < 30; ++rep)
            for (Index d = 0; d < 10; ++d) modes.push_back(420 + d);  // (4, 2, d)
        const StackedModes m = stacked_modes(probabilities(modes, 0.95));
        CHECK(m.modes == 10);
        CHECK(m.kl == doctest::Approx(std::log(100.0)).epsilon(1e-12));
        CHECK(m.channel_kl[0] == doctest::Approx(std::log(10.0)).epsilon(1e-12));
        CHECK(m.channel_kl[1] == doctest::Approx(std::log(10.0)).epsilon(1e-12));
        CHECK(m.channel_kl[2] == doctest::Approx(0.0).epsilon(1e-12));
    }
    SUBCASE("samples the classifier cannot read are not modes") {
        std::vector<Index> modes = {1, 2, 3, 4};
        const StackedModes m = stacked_modes(probabilities(modes, 0.6), 0.9);
        CHECK(m.modes == 0);
        CHECK(m.modes_any == 4);
        CHECK(m.confident_share == 0.0);
    }
    CHECK_THROWS_WITH_AS(stacked_modes(Tensor<double>::zeros({4, 10})), doctest::Contains("[N, 3, 10]"), Error);
}

TEST_CASE("stacked_modes: uniformly spread samples cover every mode, with KL at the finite-sample floor") {
    // N = 26 000 modes drawn uniformly, as PacGAN evaluates: a mode is missed with
    // probability (1 - 1/1000)^26000 = e^-26, and the KL estimate has mean ≈ 999/(2N) =
    // 0.0192 and standard deviation ≈ √(999/2)/N = 0.00086; 5 of those is the tolerance.
    const Index n = 26000;
    Generator g(11);
    std::vector<Index> modes;
    for (Index i = 0; i < n; ++i) modes.push_back(g.randint(1000));
    const StackedModes m = stacked_modes(probabilities(modes, 0.97));
    CHECK(m.modes == 1000);
    CHECK(std::fabs(m.kl - 999.0 / (2.0 * n)) < 5 * std::sqrt(999.0 / 2) / n);
    for (double k : m.channel_kl) CHECK(k < 0.002);  // 9/(2N) = 0.00017 expected
}
