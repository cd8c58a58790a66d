// The autodiff engine: deep chains, shared subexpressions, gradients handed on by sums,
// NoGrad, retain_graph, gradients of gradients through a whole critic (WGAN-GP), buffer reuse across steps.
#include <cmath>

#include "harness.hpp"

using namespace ember;
using namespace ember::test;

TEST_CASE("a 100k-node chain backpropagates without recursion") {
    V x(Tensor<double>::scalar(1.0), true);
    V y = x;
    for (int i = 0; i < 100000; ++i) y = V(y * 1.0000001 + 1e-9);
    y.backward();
    CHECK(x.grad().item() == doctest::Approx(std::pow(1.0000001, 100000)).epsilon(1e-9));
    // Dropping the last handle to a long unreleased chain must not overflow the stack.
    V z = x;
    for (int i = 0; i < 100000; ++i) z = V(z + 1.0);
    z = V();
}

TEST_CASE("a node shared by several consumers gets all of its gradient") {
    // y = Σ h² + 3h + h·x with h = exp(x): dy/dx = (2h + 3 + x)·h + h
    V x(Tensor<double>::from({2}, {1.5, -0.5}), true);
    V h = exp(x);
    V a = h * h, b = h * 3.0, c = h * x;
    V y = sum(V(a + b + c));
    y.backward();
    for (int i = 0; i < 2; ++i) {
        const double xv = x.value().flat(i), hv = std::exp(xv);
        CHECK(x.grad().flat(i) == doctest::Approx((2 * hv + 3 + xv) * hv + hv).epsilon(1e-12));
    }
    // Gradients accumulate into leaves across backward calls until zero_grad().
    V y2 = sum(V(x * 2.0));
    const double before = x.grad().flat(0);
    y2.backward();
    CHECK(x.grad().flat(0) == doctest::Approx(before + 2));
    x.zero_grad();
    CHECK_FALSE(x.grad().defined());
}

TEST_CASE("a sum hands its gradient on: shared storage never leaks between gradients") {
    // a + b and a - b pass the incoming gradient g to a (and + to b) without copying it; the
    // leaves' grads must still be separate tensors that accumulate independently.
    const Tensor<double> w = Tensor<double>::from({2, 3}, {1, -2, 3, 0.5, 4, -1});
    V x(Tensor<double>::from({2, 3}, {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}), true);
    V y(Tensor<double>::from({2, 3}, {-1, 1, -1, 1, -1, 1}), true);
    for (int call = 1; call <= 2; ++call) {
        sum(V(V(x + y) * w)).backward();
        for (Index i = 0; i < 6; ++i) {
            CHECK(x.grad().flat(i) == doctest::Approx(call * w.flat(i)));
            CHECK(y.grad().flat(i) == doctest::Approx(call * w.flat(i)));
        }
    }
    x.zero_grad(), y.zero_grad();
    sum(V(V(x - y) * w)).backward();  // a - b: g to a, -g to b
    sum(V(V(x + x) * w)).backward();  // x sits in two slots: 2g, not g
    for (Index i = 0; i < 6; ++i) {
        CHECK(x.grad().flat(i) == doctest::Approx(3 * w.flat(i)));
        CHECK(y.grad().flat(i) == doctest::Approx(-w.flat(i)));
    }
    // Into an intermediate that has a second consumer: h = exp(x), z = h + y, so h's pending
    // gradient is the passed-on w plus 2h from Σ h², summed without touching y's gradient:
    // d/dx = (w + 2h)·h, d/dy = w.
    x.zero_grad(), y.zero_grad();
    const V h = exp(x);
    const V z = h + y;
    V(sum(V(z * w)) + sum(V(h * h))).backward();
    for (Index i = 0; i < 6; ++i) {
        const double hv = std::exp(x.value().flat(i));
        CHECK(x.grad().flat(i) == doctest::Approx((w.flat(i) + 2 * hv) * hv).epsilon(1e-12));
        CHECK(y.grad().flat(i) == doctest::Approx(w.flat(i)).epsilon(1e-12));
    }
}

TEST_CASE("NoGrad records nothing; detach cuts the graph") {
    V x(Tensor<double>::from({3}, {1, 2, 3}), true);
    {
        NoGrad guard;
        V y = x * x;
        CHECK_FALSE(y.requires_grad());
        CHECK(y.node() == nullptr);
        V m = matmul(reshape(x, {1, 3}), reshape(x, {3, 1}));
        CHECK(m.node() == nullptr);
    }
    CHECK(grad_enabled());
    V d = x.detach();
    CHECK_FALSE(d.requires_grad());
    V y = sum(V(x * d));  // d is a constant: dy/dx = d
    y.backward();
    CHECK(x.grad().to_vector() == std::vector<double>{1, 2, 3});
    CHECK_THROWS_WITH_AS(V(x * 2.0).backward(), doctest::Contains("output must be a scalar"), Error);
    CHECK_THROWS_AS(d.backward(), Error);
}

TEST_CASE("the graph is freed after backward unless retained") {
    V x(Tensor<double>::from({2}, {1, 2}), true);
    V y = sum(V(exp(x)));
    y.backward({.retain_graph = true});
    y.backward();  // allowed: the first call retained the graph
    CHECK(x.grad().flat(0) == doctest::Approx(2 * std::exp(1.0)));
    CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("already freed"), Error);
}

TEST_CASE("grad() and backward() take an elementwise expression as it is") {
    const V x(Tensor<double>::scalar(3.0), true), w(Tensor<double>::scalar(2.0), true);
    const auto g = grad(w * x * x, {x, w});  // no Var<double>(...) around the expression
    CHECK(g[0].item() == 12.0);               // 2wx
    CHECK(g[1].item() == 9.0);                // x²
    backward(w * exp(x - 3.0));
    CHECK(x.grad().item() == 2.0);
    CHECK(w.grad().item() == 1.0);
}

TEST_CASE("grad() returns gradients without touching leaves; create_graph differentiates again") {
    V x(Tensor<double>::from({3}, {0.5, -1, 2}), true);
    V y = sum(V(pow(x, 3)));
    auto g = grad(y, {x}, {.create_graph = true});  // 3x²
    CHECK_FALSE(x.grad().defined());
    CHECK(g[0].value().to_vector() == std::vector<double>{0.75, 3, 12});
    REQUIRE(g[0].requires_grad());
    auto h = grad(sum(g[0]), {x});  // 6x
    CHECK(h[0].value().to_vector() == std::vector<double>{3, -6, 12});
    // An input the output does not depend on gets zeros.
    V unused(Tensor<double>::zeros({2}), true);
    auto z = grad(sum(V(x * 1.0)), {unused});
    CHECK(z[0].value().to_vector() == std::vector<double>{0, 0});
}

TEST_CASE("WGAN-GP penalty: parameter gradient through a double backward matches finite differences") {
    // Critic D(x) = w2 · tanh(x W1 + b1); penalty = mean_i (‖∇_x D(x̂_i)‖ - 1)²
    Generator gen(9);
    const Tensor<double> real = normal<double>({4, 3}, gen), fake = normal<double>({4, 3}, gen);
    const Tensor<double> eps = uniform<double>({4, 1}, gen);
    auto penalty = [&](const Vs& p) {
        const V &W1 = p[0], &b1 = p[1], &w2 = p[2];
        V xhat(Tensor<double>(eps * real + (1.0 - eps) * fake), true);
        V d = matmul(V(tanh(matmul(xhat, W1) + b1)), w2);  // [4,1]
        V gx = grad(sum(d), {xhat}, {.create_graph = true})[0];
        return mean(V(square(norm2(gx, 1) - 1.0)));
    };
    const Ts params = {normal<double>({3, 5}, gen), normal<double>({5}, gen), normal<double>({5, 1}, gen)};
    const CheckResult r = gradcheck(penalty, params);
    CHECK_MESSAGE(r.ok, r.message);
    const CheckResult r2 = gradgradcheck(penalty, params);
    CHECK_MESSAGE(r2.ok, r2.message);
}

TEST_CASE("a repeated training step reuses its buffers instead of allocating") {
    Generator gen(3);
    Var<float> W(normal<float>({32, 16}, gen), true), b(Tensor<float>::zeros({16}), true);
    const Tensor<float> x = normal<float>({8, 32}, gen);
    auto step = [&] {
        Var<float> h = relu(matmul(Var<float>(x), W) + b);
        Var<float> loss = mean(Var<float>(square(h)));
        loss.backward();
        W.zero_grad();
        b.zero_grad();
    };
    step();
    step();
    const auto before = pool_stats().system_allocs;
    for (int i = 0; i < 5; ++i) step();
    CHECK(pool_stats().system_allocs == before);
}
