// Classifier training and judging (include/ember/eval/classification.hpp): the softmax
// cross-entropy (closed-form values and a finite-difference gradcheck in double), softmax
// rows, the class histogram and its KL divergence to uniform (closed forms: 0 for a uniform
// histogram, log K for a single class, log 2 for two equally frequent classes of four).
#include <doctest/doctest.h>

#include <cmath>
#include <ember/ember.hpp>
#include <ember/eval/classification.hpp>
#include <vector>

using namespace ember;

namespace {
bool close(double got, double want, double tol = 1e-12) { return std::fabs(got - want) <= tol * (1 + std::fabs(want)); }
}  // namespace

TEST_CASE("softmax_cross_entropy: closed-form values") {
    // Row 1: logits (0, 0), label 0: log 2. Row 2: logits (log 3, 0), label 1: log 4 - 0.
    Tensor<double> z = Tensor<double>::empty(Shape{2, 2});
    z.data()[0] = 0, z.data()[1] = 0, z.data()[2] = std::log(3.0), z.data()[3] = 0;
    const double loss = softmax_cross_entropy(Var<double>(z), {0, 1}).item();
    CHECK(close(loss, 1.5 * std::log(2.0)));
    // Large logits do not overflow: (1000, 0) with label 0 costs log(1 + e^-1000) ≈ 0.
    Tensor<double> big = Tensor<double>::empty(Shape{1, 2});
    big.data()[0] = 1000, big.data()[1] = 0;
    CHECK(std::fabs(softmax_cross_entropy(Var<double>(big), {0}).item()) < 1e-300);
    CHECK(close(softmax_cross_entropy(Var<double>(big), {1}).item(), 1000.0));
}

TEST_CASE("softmax_cross_entropy: gradient matches finite differences") {
    Generator gen(5);
    const std::vector<Index> labels{2, 0, 4, 1, 3, 3};
    const auto f = [&](const std::vector<Var<double>>& x) { return softmax_cross_entropy(x[0], labels); };
    const CheckResult r = gradcheck(f, {normal<double>(Shape{6, 5}, gen)});
    CHECK_MESSAGE(r.ok, r.message);
    // d/dz = (softmax(z) - onehot(y)) / N, the textbook form.
    const Tensor<double> z = normal<double>(Shape{6, 5}, gen);
    Var<double> zv(z.clone(), true);
    backward(softmax_cross_entropy(zv, labels));
    const Tensor<double> p = softmax_rows(z);
    for (Index i = 0; i < 6; ++i)
        for (Index k = 0; k < 5; ++k) {
            const double want = (p.data()[i * 5 + k] - (labels[static_cast<std::size_t>(i)] == k ? 1.0 : 0.0)) / 6.0;
            CHECK(close(zv.grad().data()[i * 5 + k], want, 1e-12));
        }
}

TEST_CASE("softmax_cross_entropy: clear errors") {
    Generator gen(1);
    const Var<double> z(normal<double>(Shape{3, 4}, gen));
    CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, {0, 1}), doctest::Contains("2 labels"), Error);
    CHECK_THROWS_WITH_AS(softmax_cross_entropy(z, {0, 1, 4}), doctest::Contains("out of range"), Error);
    CHECK_THROWS_AS(softmax_cross_entropy(Var<double>(normal<double>(Shape{4}, gen)), {0, 1, 2, 3}), Error);
}

TEST_CASE("softmax_rows: rows are probabilities, stable for large logits") {
    Tensor<double> z = Tensor<double>::empty(Shape{2, 3});
    const double v[] = {1, 2, 3, 1000, 0, -1000};
    std::copy(v, v + 6, z.data());
    const Tensor<double> p = softmax_rows(z);
    const double e = std::exp(1.0), s = e + e * e + e * e * e;
    CHECK(close(p.data()[0], e / s));
    CHECK(close(p.data()[2], e * e * e / s));
    CHECK(close(p.data()[3], 1.0));
    CHECK(p.data()[5] == 0.0);
    CHECK(std::isfinite(p.data()[4]));
}

TEST_CASE("class_histogram and kl_to_uniform: closed forms") {
    const std::vector<double> h = class_histogram({0, 1, 1, 3}, 4);
    CHECK(h == std::vector<double>{0.25, 0.5, 0.0, 0.25});
    CHECK(close(kl_to_uniform(h), 0.25 * std::log(1.0) + 0.5 * std::log(2.0) + 0.25 * std::log(1.0)));
    CHECK(kl_to_uniform(class_histogram({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 10)) == 0.0);
    CHECK(close(kl_to_uniform(class_histogram({7, 7, 7}, 10)), std::log(10.0)));  // collapse: log K
    const std::vector<double> two_of_four{0.5, 0.5, 0.0, 0.0};
    CHECK(close(kl_to_uniform(two_of_four), std::log(2.0)));  // 0 log 0 = 0
    // KL(h || U) = log K - H(h) for an arbitrary h.
    const std::vector<double> g{0.1, 0.2, 0.3, 0.4};
    double entropy = 0;
    for (double p : g) entropy -= p * std::log(p);
    CHECK(close(kl_to_uniform(g), std::log(4.0) - entropy));
}

TEST_CASE("class_histogram and kl_to_uniform: clear errors") {
    CHECK_THROWS_WITH_AS(class_histogram({0, 10}, 10), doctest::Contains("out of range"), Error);
    CHECK_THROWS_WITH_AS(class_histogram({}, 10), doctest::Contains("no labels"), Error);
    CHECK_THROWS_WITH_AS(kl_to_uniform({0.5, 0.6}), doctest::Contains("sum to 1"), Error);
    CHECK_THROWS_WITH_AS(kl_to_uniform({1.5, -0.5}), doctest::Contains(">= 0"), Error);
    CHECK_THROWS_AS(kl_to_uniform({}), Error);
}
