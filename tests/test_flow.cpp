// Normalising flows (include/ember/flow/; docs/math.md §6).
//
// Every step, and every composed flow, is checked in double on small inputs for
//  - invertibility: inverse(forward(x)) = x;
//  - its log-determinant against brute force: the full Jacobian ∂y_n/∂x_n of each sample,
//    one reverse pass per output coordinate, factorised by Eigen's LU (log|det| = Σ
//    log|U_ii|); the cross-sample blocks must be exactly zero (samples do not interact);
//  - gradients of the log-likelihood L = Σ_n r_n log p(x_n) (r fixed random) with respect
//    to x and every parameter against central differences, and the second-order
//    s = Σ r₂ ⊙ ∂L/∂x (what score matching and gradient penalties differentiate) likewise.
// Before the checks every parameter is moved off its initial value (couplings start as the
// identity, LU weights as a rotation), so no term of a derivative is zero by accident.
//
// Tolerances.
//  - Exact identities in double (inverse, log-determinant, closed forms): each side is a
//    few dozen operations on O(1)-O(10) values, so rounding is ~1e-14; the inverse can
//    amplify it by the Lipschitz constant of f⁻¹ (≤ e^{|s|} ≈ 5 per coupling, ‖W⁻¹‖ ≈ 2
//    here). 1e-10 is 10³ or more above that and 10⁸ below the O(1e-2)-O(1) error of any
//    wrong formula.
//  - Finite differences with h = 1e-6: truncation O(h²·f''') ≈ 1e-12, rounding
//    ε·|f|/h ≈ 2e-9 for |f| ~ 10, so atol 1e-6 + rtol 1e-5 has a margin of 100 or more
//    without hiding a wrong derivative (those are off by O(1)) — as in test_nn.cpp.
//  - Float: ε = 1.2e-7, amplified as above through ≤ 8 steps on values ≤ 3: ~1e-5; 1e-4.
//  - The trained 2-D flow: see that test.
//
// Every test runs on one thread (OneThread): the tensors are tiny, so forking threads per
// op costs more than it saves, and when the machine is busy (ctest runs two tests at once)
// each parallel region can wait a whole scheduler slice for its second thread.
#include <doctest/doctest.h>

#include <Eigen/LU>
#include <algorithm>
#include <cmath>
#include <ember/ember.hpp>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace ember;

namespace {

using V = Var<double>;
using Td = Tensor<double>;
using StepPtr = std::shared_ptr<flow::FlowStep<double>>;

using test::OneThread;

Td random_uniform(const Shape& s, std::uint64_t seed, double lo, double hi) {
    Generator g(seed);
    return uniform<double>(s, g, lo, hi);
}

double max_abs_diff(const Td& a, const Td& b) {
    REQUIRE(a.shape() == b.shape());
    double worst = 0;
    for (Index i = 0; i < a.numel(); ++i) worst = std::max(worst, std::fabs(a.flat(i) - b.flat(i)));
    return worst;
}

// Moves every parameter by N(0, σ²), so that no step sits at its (identity-like) start.
template <Real T>
void perturb_parameters(nn::Module<T>& m, std::uint64_t seed, double sigma = 0.3) {
    Generator g(seed);
    for (auto& [name, p] : m.named_parameters())
        p.value().copy_from(Tensor<T>(p.value() + normal<T>(p.shape(), g, T(0), static_cast<T>(sigma))));
}

// Runs the step once on x (ActNorm initialises itself from it), then perturbs it.
void prepare(flow::FlowStep<double>& step, const Td& x, std::uint64_t seed) {
    {
        NoGrad no_grad;
        step.forward_and_logdet(V(x));
    }
    perturb_parameters(step, seed);
}

void check_inverse(flow::FlowStep<double>& step, const Td& x) {
    NoGrad no_grad;
    const Td back = step.inverse(step.forward_and_logdet(V(x)).y).value();
    CHECK_MESSAGE(max_abs_diff(back, x) <= 1e-10, "inverse(forward(x)) - x: ", max_abs_diff(back, x));
}

// The log-determinant of the step against log|det| of its Jacobian, built by autodiff.
void check_logdet(flow::FlowStep<double>& step, const Td& x) {
    const V xv(x.clone(), true);
    const flow::FlowOutput<double> out = step.forward_and_logdet(xv);
    const Index N = x.dim(0), D = x.numel() / N;
    REQUIRE(out.y.numel() == N * D);
    REQUIRE(out.logdet.shape() == Shape{N});
    for (Index n = 0; n < N; ++n) {
        Eigen::MatrixXd J(D, D);
        double cross = 0;  // largest |∂y_n/∂x_m|, m ≠ n
        for (Index k = 0; k < D; ++k) {
            Td pick = Td::zeros(out.y.shape());
            pick.data()[n * D + k] = 1;
            const Td g = grad(sum(V(out.y * pick)), {xv}, {.retain_graph = true})[0].value().contiguous();
            for (Index m = 0; m < N; ++m)
                for (Index j = 0; j < D; ++j) {
                    if (m == n) J(k, j) = g.data()[m * D + j];
                    else cross = std::max(cross, std::fabs(g.data()[m * D + j]));
                }
        }
        const Eigen::PartialPivLU<Eigen::MatrixXd> lu(J);
        double brute = 0;
        for (Index i = 0; i < D; ++i) brute += std::log(std::fabs(lu.matrixLU()(i, i)));
        const double got = out.logdet.value().flat(n);
        CHECK_MESSAGE(std::fabs(got - brute) <= 1e-10 * std::max(1.0, std::fabs(brute)), "sample ", n, ": logdet ", got,
                      ", brute-force log|det J| ", brute);
        CHECK_MESSAGE(cross == 0.0, "sample ", n, " depends on another sample: ", cross);
    }
}

struct Tolerance {
    double atol = 1e-6, rtol = 1e-5;
};

// Central differences of f against `analytic`, perturbing tensors in place; at most
// `per_tensor` elements of each tensor, spread evenly (cost stays bounded for the
// conditioner networks; every tensor is still probed at several places).
void compare_with_differences(const std::string& what, const std::vector<std::pair<std::string, Td>>& wrt,
                              const std::vector<V>& analytic, const std::function<double()>& f, Tolerance tol = {},
                              Index per_tensor = 24) {
    const double h = 1e-6;
    for (std::size_t i = 0; i < wrt.size(); ++i) {
        const Td& t = wrt[i].second;
        REQUIRE(t.is_contiguous());
        const Td a = analytic[i].value().contiguous();
        const Index stride = std::max<Index>(1, (t.numel() + per_tensor - 1) / per_tensor);
        for (Index k = 0; k < t.numel(); k += stride) {
            const double saved = t.data()[k];
            t.data()[k] = saved + h;
            const double fp = f();
            t.data()[k] = saved - h;
            const double fm = f();
            t.data()[k] = saved;
            const double numeric = (fp - fm) / (2 * h);
            if (!(std::fabs(a.data()[k] - numeric) <= tol.atol + tol.rtol * std::fabs(numeric))) {
                FAIL_CHECK(what << ": d/d " << wrt[i].first << "[" << k << "]: analytic " << a.data()[k]
                                << ", numeric " << numeric);
                return;
            }
        }
    }
}

// First- and second-order gradients of the log-likelihood (see the file comment).
void check_gradients(flow::Flow<double>& f, const Td& x_value) {
    const V x(x_value.clone(), true);
    Generator g(99);
    const Td r1 = normal<double>(Shape{x.dim(0)}, g);
    const Td r2 = normal<double>(x.shape(), g);
    std::vector<std::pair<std::string, Td>> wrt{{"x", x.value()}};
    std::vector<V> vars{x};
    for (auto& [name, p] : f.named_parameters()) {
        wrt.emplace_back(name, p.value());
        vars.push_back(p);
    }
    auto L = [&] { return sum(V(f.log_prob(x) * r1)); };
    auto s = [&] { return sum(V(grad(L(), {x}, {.create_graph = true})[0] * r2)); };
    compare_with_differences("first order", wrt, grad(L(), vars), [&] {
        NoGrad no_grad;
        return L().item();
    });
    compare_with_differences("second order", wrt, grad(s(), vars), [&] { return s().item(); });
}

// All checks of the file comment for one step (or flow) on input x.
void check_step(const std::string& what, const StepPtr& step, const Td& x, std::uint64_t seed = 1) {
    INFO(what);
    prepare(*step, x, seed);
    check_inverse(*step, x);
    check_logdet(*step, x);
    flow::Flow<double> f(flow::detail::event_of(x.shape()));
    f.add(step);
    check_gradients(f, x);
}

}  // namespace

TEST_CASE("masks: halves, checkerboard and channel masks, and their flips") {
    OneThread one_thread;
    CHECK(flow::half_mask<double>(5).to_vector() == std::vector<double>{1, 1, 1, 0, 0});
    CHECK(flow::half_mask<double>(5, true).to_vector() == std::vector<double>{0, 0, 0, 1, 1});
    CHECK(flow::checkerboard_mask<double>(2, 2, 3).to_vector() ==
          std::vector<double>{1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0});
    CHECK(flow::checkerboard_mask<double>(1, 2, 2, true).to_vector() == std::vector<double>{0, 1, 1, 0});
    CHECK(flow::channel_mask<double>(3, 1, 2).to_vector() == std::vector<double>{1, 1, 1, 1, 0, 0});
    CHECK(flow::channel_mask<double>(2, 1, 2, true).to_vector() == std::vector<double>{0, 0, 1, 1});
    CHECK_THROWS_WITH_AS(flow::half_mask<double>(1), doctest::Contains("at least 2 features"), Error);
    CHECK_THROWS_WITH_AS(flow::channel_mask<double>(1, 4, 4), doctest::Contains("at least 2 channels"), Error);

    Generator gen(1);
    auto net = flow::mlp_conditioner<double>(3, 4, 6, gen);
    CHECK_THROWS_WITH_AS(flow::AffineCoupling<double>(Td::ones(Shape{3}), net), doctest::Contains("both 0s and 1s"), Error);
    CHECK_THROWS_WITH_AS(flow::AffineCoupling<double>(Td::from(Shape{3}, {1, 0.5, 0}), net),
                         doctest::Contains("must be 0 or 1"), Error);
    CHECK_THROWS_WITH_AS(flow::AdditiveCoupling<double>(Td::ones(Shape{3, 1}), net), doctest::Contains("[C,H,W]"), Error);
}

TEST_CASE("squeeze2d: space-to-depth in Glow's channel order, its inverse, gradients") {
    OneThread one_thread;
    const Td x = Td::arange(2 * 3 * 4 * 6).reshape(Shape{2, 3, 4, 6});
    const Td y = flow::squeeze2d(V(x)).value();
    REQUIRE(y.shape() == Shape{2, 12, 2, 3});
    bool all = true;
    for (Index n = 0; n < 2; ++n)
        for (Index c = 0; c < 3; ++c)
            for (Index i = 0; i < 2; ++i)
                for (Index j = 0; j < 2; ++j)
                    for (Index h = 0; h < 2; ++h)
                        for (Index w = 0; w < 3; ++w)
                            all = all && y.at({n, 4 * c + 2 * i + j, h, w}) == x.at({n, c, 2 * h + i, 2 * w + j});
    CHECK(all);
    CHECK(max_abs_diff(flow::unsqueeze2d(V(y)).value(), x) == 0.0);

    // Both are linear, so first order is the whole story (their second derivatives are 0;
    // the image flow below differentiates through them twice).
    const Td xs = random_uniform(Shape{1, 2, 2, 4}, 3, -1, 1);
    const CheckResult sq = gradcheck([](const std::vector<V>& v) { return flow::squeeze2d(v[0]); }, {xs});
    CHECK_MESSAGE(sq.ok, sq.message);
    const CheckResult unsq = gradcheck([](const std::vector<V>& v) { return flow::unsqueeze2d(v[0]); },
                                       {xs.reshape(Shape{1, 8, 1, 2})});
    CHECK_MESSAGE(unsq.ok, unsq.message);
    CHECK_THROWS_WITH_AS(flow::squeeze2d(V(Td::zeros(Shape{1, 1, 3, 4}))),
                         doctest::Contains("even H and W, got [1,1,3,4]"), Error);
    CHECK_THROWS_WITH_AS(flow::unsqueeze2d(V(Td::zeros(Shape{1, 3, 2, 2}))), doctest::Contains("[N,4C,H,W]"), Error);
}

TEST_CASE("inverse_matrix: W W⁻¹ = I, first and second derivatives, singular input") {
    OneThread one_thread;
    Td w = random_uniform(Shape{4, 4}, 5, -1, 1);
    for (Index i = 0; i < 4; ++i) w.data()[i * 5] += 3;  // diagonally dominant: well conditioned
    const Td prod = matmul(V(w), flow::inverse_matrix(V(w))).value();
    double worst = 0;
    for (Index i = 0; i < 4; ++i)
        for (Index j = 0; j < 4; ++j) worst = std::max(worst, std::fabs(prod.at({i, j}) - (i == j ? 1.0 : 0.0)));
    CHECK(worst <= 1e-12);
    const VarFunction inv = [](const std::vector<V>& v) { return flow::inverse_matrix(v[0]); };
    const CheckResult first = gradcheck(inv, {w});
    CHECK_MESSAGE(first.ok, first.message);
    const CheckResult second = gradgradcheck(inv, {w});
    CHECK_MESSAGE(second.ok, second.message);
    CHECK_THROWS_WITH_AS(flow::inverse_matrix(V(Td::from(Shape{2, 2}, {1, 2, 2, 4}))), doctest::Contains("singular"), Error);
    CHECK_THROWS_WITH_AS(flow::inverse_matrix(V(Td::zeros(Shape{2, 3}))), doctest::Contains("square matrix [C,C], got [2,3]"),
                         Error);
}

TEST_CASE("every step: inverse, brute-force log-determinant, gradients of the log-likelihood") {
    OneThread one_thread;
    Generator gen(7);
    SUBCASE("AffineCoupling, vectors, first half conditions") {
        check_step("AffineCoupling halves", flow::affine_coupling_mlp<double>(5, 6, false, gen),
                   random_uniform(Shape{3, 5}, 1, -1.5, 1.5));
    }
    SUBCASE("AffineCoupling, vectors, flipped") {
        check_step("AffineCoupling halves flipped", flow::affine_coupling_mlp<double>(4, 6, true, gen),
                   random_uniform(Shape{3, 4}, 2, -1.5, 1.5));
    }
    SUBCASE("AffineCoupling, images, checkerboard mask") {
        check_step("AffineCoupling checkerboard",
                   flow::affine_coupling_conv<double>(flow::checkerboard_mask<double>(2, 2, 3), 3, gen),
                   random_uniform(Shape{2, 2, 2, 3}, 3, -1.5, 1.5));
    }
    SUBCASE("AffineCoupling, images, channel mask") {
        check_step("AffineCoupling channels",
                   flow::affine_coupling_conv<double>(flow::channel_mask<double>(4, 2, 2, true), 3, gen),
                   random_uniform(Shape{2, 4, 2, 2}, 4, -1.5, 1.5));
    }
    SUBCASE("AdditiveCoupling, vectors") {
        check_step("AdditiveCoupling halves", flow::additive_coupling_mlp<double>(4, 6, true, gen),
                   random_uniform(Shape{3, 4}, 5, -1.5, 1.5));
    }
    SUBCASE("AdditiveCoupling, images, checkerboard mask") {
        check_step("AdditiveCoupling checkerboard",
                   flow::additive_coupling_conv<double>(flow::checkerboard_mask<double>(1, 4, 4, true), 3, gen),
                   random_uniform(Shape{2, 1, 4, 4}, 6, -1.5, 1.5));
    }
    SUBCASE("ActNorm, vectors") {
        check_step("ActNorm [N,C]", std::make_shared<flow::ActNorm<double>>(3), random_uniform(Shape{4, 3}, 7, -2, 2));
    }
    SUBCASE("ActNorm, images") {
        check_step("ActNorm [N,C,H,W]", std::make_shared<flow::ActNorm<double>>(3),
                   random_uniform(Shape{2, 3, 2, 2}, 8, -2, 2));
    }
    SUBCASE("InvertibleLinear") {
        check_step("InvertibleLinear", std::make_shared<flow::InvertibleLinear<double>>(4, gen),
                   random_uniform(Shape{3, 4}, 9, -1.5, 1.5));
    }
    SUBCASE("InvertibleConv1x1") {
        check_step("InvertibleConv1x1", std::make_shared<flow::InvertibleConv1x1<double>>(3, gen),
                   random_uniform(Shape{2, 3, 2, 2}, 10, -1.5, 1.5));
    }
    SUBCASE("Squeeze") {
        check_step("Squeeze", std::make_shared<flow::Squeeze<double>>(), random_uniform(Shape{2, 1, 4, 4}, 11, -1.5, 1.5));
    }
    SUBCASE("Unsqueeze") {
        check_step("Unsqueeze", std::make_shared<flow::Unsqueeze<double>>(), random_uniform(Shape{2, 4, 2, 2}, 14, -1.5, 1.5));
    }
    SUBCASE("FactorOut around an affine coupling") {
        check_step("FactorOut", std::make_shared<flow::FactorOut<double>>(2, flow::affine_coupling_conv<double>(flow::channel_mask<double>(2, 2, 2), 3, gen)),
                   random_uniform(Shape{2, 3, 2, 2}, 15, -1.5, 1.5));
    }
    SUBCASE("LogitTransform, alpha = 0.05") {
        check_step("Logit 0.05", std::make_shared<flow::LogitTransform<double>>(0.05),
                   random_uniform(Shape{2, 6}, 12, 0.05, 0.95));
    }
    SUBCASE("LogitTransform, alpha = 0, images") {
        check_step("Logit 0", std::make_shared<flow::LogitTransform<double>>(0.0),
                   random_uniform(Shape{2, 1, 2, 3}, 13, 0.1, 0.9));
    }
}

TEST_CASE("composed flows: inverse, brute-force log-determinant, gradients of the log-likelihood") {
    OneThread one_thread;
    Generator gen(8);
    SUBCASE("vectors: ActNorm, a nested flow (InvertibleLinear, affine), additive, affine") {
        auto f = std::make_shared<flow::Flow<double>>(Shape{4});
        f->add<flow::ActNorm>(4);
        auto inner = std::make_shared<flow::Flow<double>>(Shape{4});
        inner->add<flow::InvertibleLinear>(4, gen);
        inner->add(flow::affine_coupling_mlp<double>(4, 6, false, gen));
        f->add(inner);
        f->add(flow::additive_coupling_mlp<double>(4, 6, true, gen));
        f->add(flow::affine_coupling_mlp<double>(4, 6, true, gen));
        check_step("vector flow", f, random_uniform(Shape{3, 4}, 21, -1.5, 1.5));
    }
    SUBCASE("images: logit, checkerboard couplings, squeeze, ActNorm, 1x1 conv, channel couplings") {
        auto f = std::make_shared<flow::Flow<double>>(Shape{1, 4, 4});
        f->add<flow::LogitTransform>(0.05);
        f->add(flow::affine_coupling_conv<double>(flow::checkerboard_mask<double>(1, 4, 4), 3, gen));
        f->add(flow::affine_coupling_conv<double>(flow::checkerboard_mask<double>(1, 4, 4, true), 3, gen));
        f->add<flow::Squeeze>();
        f->add<flow::ActNorm>(4);
        f->add<flow::InvertibleConv1x1>(4, gen);
        f->add(flow::affine_coupling_conv<double>(flow::channel_mask<double>(4, 2, 2), 3, gen));
        f->add(flow::additive_coupling_conv<double>(flow::channel_mask<double>(4, 2, 2, true), 3, gen));
        CHECK(f->latent_shape() == Shape{4, 2, 2});
        check_step("image flow", f, random_uniform(Shape{2, 1, 4, 4}, 22, 0.05, 0.95));
    }
    SUBCASE("multi-scale: a FactorOut whose inner flow squeezes, transforms and unsqueezes") {
        auto f = std::make_shared<flow::Flow<double>>(Shape{1, 4, 4});
        f->add<flow::Squeeze>();  // [4,2,2]
        f->add(flow::affine_coupling_conv<double>(flow::channel_mask<double>(4, 2, 2), 3, gen));
        auto coarse = std::make_shared<flow::Flow<double>>(Shape{2, 2, 2});
        coarse->add<flow::Squeeze>();  // [8,1,1]
        coarse->add<flow::ActNorm>(8);
        coarse->add<flow::InvertibleConv1x1>(8, gen);
        coarse->add(flow::affine_coupling_conv<double>(flow::channel_mask<double>(8, 1, 1, true), 3, gen));
        coarse->add<flow::Unsqueeze>();
        f->add<flow::FactorOut>(2, coarse);
        CHECK(f->latent_shape() == Shape{4, 2, 2});
        check_step("multi-scale flow", f, random_uniform(Shape{2, 1, 4, 4}, 23, -1.5, 1.5));
    }
}

TEST_CASE("ActNorm: data-dependent initialisation; the flag survives a state_dict round trip") {
    OneThread one_thread;
    Generator gen(3);
    const Td x = Td(normal<double>(Shape{64, 3, 2, 2}, gen, 0.0, 2.0) + 1.0);
    flow::ActNorm<double> a(3);
    CHECK(!a.initialized());
    const Td y = a(V(x)).value();
    CHECK(a.initialized());
    // Per channel over (N, H, W): mean exactly 0 up to rounding; variance std²/(std + eps)²
    // = 1 - 2·eps/std + O(eps²), with eps = 1e-6 and std ≈ 2: 1 - 1e-6.
    for (Index c = 0; c < 3; ++c) {
        double m = 0, v = 0;
        const Index n = 64 * 4;
        for (Index i = 0; i < 64; ++i)
            for (Index p = 0; p < 4; ++p) m += y.at({i, c, p / 2, p % 2});
        m /= n;
        for (Index i = 0; i < 64; ++i)
            for (Index p = 0; p < 4; ++p) v += std::pow(y.at({i, c, p / 2, p % 2}) - m, 2);
        v /= n;
        CHECK(std::fabs(m) <= 1e-12);
        CHECK(std::fabs(v - 1) <= 3e-6);
    }

    // A restored copy does not initialise again on new data; a fresh one does.
    const Td other = Td(normal<double>(Shape{8, 3, 2, 2}, gen, 0.0, 5.0) - 3.0);
    const std::vector<std::byte> bytes = safetensors_to_bytes<double>(a.state_dict());
    flow::ActNorm<double> restored(3), fresh(3);
    restored.load_state_dict(safetensors_from_bytes<double>(bytes).tensors);
    CHECK(restored.initialized());
    CHECK(max_abs_diff(restored(V(other)).value(), a(V(other)).value()) == 0.0);
    CHECK(max_abs_diff(fresh(V(other)).value(), a(V(other)).value()) > 0.1);

    CHECK_THROWS_WITH_AS(flow::ActNorm<double>(2)(V(Td::zeros(Shape{1, 2}))), doctest::Contains("more than one value"), Error);
    CHECK_THROWS_WITH_AS(a(V(Td::zeros(Shape{4, 2, 2, 2}))), doctest::Contains("expected input [N,3] or [N,3,H,W], got [4,2,2,2]"),
                         Error);
}

TEST_CASE("InvertibleLinear and InvertibleConv1x1 start from a rotation: W Wᵀ = I, logdet 0") {
    OneThread one_thread;
    Generator gen(4);
    flow::InvertibleLinear<double> lin(5, gen);
    const Td w = lin.weight().value();
    const Td wwt = matmul(V(w), transpose(V(w))).value();
    double worst = 0, off_diagonal = 0;
    for (Index i = 0; i < 5; ++i)
        for (Index j = 0; j < 5; ++j) {
            worst = std::max(worst, std::fabs(wwt.at({i, j}) - (i == j ? 1.0 : 0.0)));
            if (i != j) off_diagonal = std::max(off_diagonal, std::fabs(w.at({i, j})));
        }
    CHECK(worst <= 1e-12);
    CHECK(off_diagonal > 0.1);  // it mixes the features (not a permutation)
    CHECK(std::fabs(lin.log_abs_det().item()) <= 1e-12);
    CHECK_THROWS_WITH_AS(lin(V(Td::zeros(Shape{2, 4}))), doctest::Contains("expected input [N,5], got [2,4]"), Error);
    flow::InvertibleConv1x1<double> conv(3, gen);
    CHECK_THROWS_WITH_AS(conv(V(Td::zeros(Shape{2, 4, 2, 2}))), doctest::Contains("expected input [N,3,H,W]"), Error);
}

TEST_CASE("couplings: clear errors for wrong inputs and wrong network outputs") {
    OneThread one_thread;
    Generator gen(5);
    auto affine = flow::affine_coupling_mlp<double>(5, 4, false, gen);
    CHECK_THROWS_WITH_AS(affine->forward_and_logdet(V(Td::zeros(Shape{3, 4}))),
                         doctest::Contains("AffineCoupling: expected input [N,5], got [3,4]"), Error);
    flow::AffineCoupling<double> wrong_net(flow::half_mask<double>(5), flow::mlp_conditioner<double>(5, 4, 5, gen));
    CHECK_THROWS_WITH_AS(wrong_net(V(Td::zeros(Shape{3, 5}))),
                         doctest::Contains("maps input [3,5] to [3,5]; expected [3,10]"), Error);
    auto additive = flow::additive_coupling_conv<double>(flow::checkerboard_mask<double>(1, 2, 2), 2, gen);
    CHECK_THROWS_WITH_AS(additive->inverse(V(Td::zeros(Shape{3, 1, 2, 4}))),
                         doctest::Contains("expected input [N,1,2,2], got [3,1,2,4]"), Error);
}

TEST_CASE("FactorOut: the factored-out channels pass unchanged; clear errors") {
    OneThread one_thread;
    Generator gen(9);
    auto coupling = flow::affine_coupling_conv<double>(flow::channel_mask<double>(2, 2, 2), 3, gen);
    perturb_parameters(*coupling, 31);
    flow::FactorOut<double> split(2, coupling);
    const Td x = random_uniform(Shape{3, 5, 2, 2}, 32, -1.0, 1.0);
    const flow::FlowOutput<double> out = split.forward_and_logdet(V(x));
    const flow::FlowOutput<double> inner = coupling->forward_and_logdet(V(x.slice(1, 0, 2).contiguous()));
    CHECK(max_abs_diff(out.y.value().slice(1, 2, 5).contiguous(), x.slice(1, 2, 5).contiguous()) == 0.0);
    CHECK(max_abs_diff(out.y.value().slice(1, 0, 2).contiguous(), inner.y.value()) == 0.0);
    CHECK(max_abs_diff(out.logdet.value(), inner.logdet.value()) == 0.0);
    CHECK(split.output_shape(Shape{5, 2, 2}) == Shape{5, 2, 2});

    CHECK_THROWS_WITH_AS(split(V(Td::zeros(Shape{3, 2, 2, 2}))), doctest::Contains("with C > 2 (the kept channels), got [3,2,2,2]"),
                         Error);
    flow::FactorOut<double> squeezing(4, std::make_shared<flow::Squeeze<double>>());
    CHECK_THROWS_WITH_AS(squeezing.output_shape(Shape{8, 2, 2}), doctest::Contains("must keep the shape"), Error);
    CHECK_THROWS_WITH_AS(squeezing(V(Td::zeros(Shape{1, 8, 2, 2}))), doctest::Contains("returned [1,16,1,1] for input [1,4,2,2]"),
                         Error);
    CHECK_THROWS_WITH_AS(flow::FactorOut<double>(0, coupling), doctest::Contains("must be positive"), Error);
    CHECK_THROWS_WITH_AS(flow::FactorOut<double>(2, nullptr), doctest::Contains("null"), Error);
    CHECK_THROWS_WITH_AS(flow::Unsqueeze<double>().output_shape(Shape{3, 2, 2}), doctest::Contains("[4C,H,W], got [3,2,2]"), Error);
}

TEST_CASE("LogitTransform: values, log-determinant formula, domain errors") {
    OneThread one_thread;
    flow::LogitTransform<double> logit(0.1);
    const Td x = Td::from(Shape{1, 3}, {0.0, 0.5, 1.0});
    const flow::FlowOutput<double> out = logit.forward_and_logdet(V(x));
    double logdet = 0;
    for (Index i = 0; i < 3; ++i) {
        const double u = 0.1 + 0.8 * x.flat(i);
        CHECK(std::fabs(out.y.value().flat(i) - std::log(u / (1 - u))) <= 1e-15);
        logdet += std::log(0.8 / (u * (1 - u)));
    }
    CHECK(std::fabs(out.logdet.item() - logdet) <= 1e-14);
    CHECK_THROWS_WITH_AS(logit(V(Td::from(Shape{1, 2}, {0.5, 1.2}))), doctest::Contains("has 1.2 at element 1"), Error);
    CHECK_THROWS_WITH_AS(flow::LogitTransform<double>(0.0)(V(Td::from(Shape{1, 2}, {0.0, 0.5}))),
                         doctest::Contains("(0, 1) (alpha = 0)"), Error);
    CHECK_THROWS_WITH_AS(flow::LogitTransform<double>(0.5), doctest::Contains("alpha must be in [0, 0.5)"), Error);
    CHECK_THROWS_WITH_AS(logit(V(Td::zeros(Shape{3}))), doctest::Contains("expected input [N, ...], got [3]"), Error);
}

TEST_CASE("dequantisation and bits per dimension") {
    OneThread one_thread;
    // Pixels 0..255 with many 255s: x = (k + u)/256 lies in [k/256, (k+1)/256), never 1.
    Generator gen(6);
    Tensor<float> pixels = Tensor<float>::empty(Shape{4096});
    for (Index i = 0; i < 4096; ++i) pixels.data()[i] = static_cast<float>(i % 2 ? 255 : i % 256);
    const Tensor<float> x = flow::dequantize_pixels(pixels, gen);
    bool in_bin = true;
    for (Index i = 0; i < 4096; ++i) in_bin = in_bin && x.data()[i] < 1.0f && std::floor(x.data()[i] * 256.0f) == pixels.data()[i];
    CHECK(in_bin);
    CHECK_THROWS_WITH_AS(flow::dequantize_pixels(Td::from(Shape{2}, {3.0, 0.5}), gen),
                         doctest::Contains("integer pixel values 0..255, got 0.5 at element 1"), Error);
    CHECK_THROWS_WITH_AS(flow::dequantize_pixels(Td::from(Shape{1}, {256.0}), gen), doctest::Contains("0..255"), Error);

    // The uniform density on [0,1)^D (log p = 0) spends exactly 8 bits per pixel; halving
    // the density in every dimension (log p = -D log 2) costs one more bit.
    CHECK(std::fabs(flow::bits_per_dim(0.0, 784) - 8.0) <= 1e-12);
    CHECK(std::fabs(flow::bits_per_dim(-784 * std::numbers::ln2, 784) - 9.0) <= 1e-12);
    const V bpd = flow::bits_per_dim(V(Td::from(Shape{2}, {0.0, -10 * std::numbers::ln2})), 10);
    CHECK(std::fabs(bpd.value().flat(0) - 8.0) <= 1e-12);
    CHECK(std::fabs(bpd.value().flat(1) - 9.0) <= 1e-12);
    CHECK_THROWS_WITH_AS(flow::bits_per_dim(0.0, 0), doctest::Contains("positive"), Error);
}

TEST_CASE("Flow: log_prob of an affine flow is the Gaussian density; sampling and temperature") {
    OneThread one_thread;
    Generator gen(9);
    flow::Flow<double> f(Shape{3});
    f.add<flow::ActNorm>(3);
    f.add<flow::InvertibleLinear>(3, gen);
    prepare(f, normal<double>(Shape{16, 3}, gen), 2);
    // x = A z + c: c = f⁻¹(0) and column j of A is f⁻¹(e_j) - c, read off the flow itself.
    Td c, A = Td::empty(Shape{3, 3});
    {
        NoGrad no_grad;
        const Td basis = Td::from(Shape{4, 3}, {0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1});
        const Td back = f.inverse(V(basis)).value();
        c = Td::from(Shape{3}, {back.at({0, 0}), back.at({0, 1}), back.at({0, 2})});
        for (Index i = 0; i < 3; ++i)
            for (Index j = 0; j < 3; ++j) A.data()[i * 3 + j] = back.at({j + 1, i}) - c.flat(i);
    }
    const Td cov = matmul(V(A), transpose(V(A))).value();
    const Td x = normal<double>(Shape{5, 3}, gen, 0.0, 2.0);
    const Td want = info::gaussian_full_log_prob(x, c, cov);
    CHECK(max_abs_diff(f.log_prob(V(x)).value(), want) <= 1e-10);

    // sample(n, gen, τ) = f⁻¹(τ ε) with ε drawn from gen; for an affine flow the samples at
    // temperature τ are c + τ (sample at τ = 1 - c), exactly.
    NoGrad no_grad;
    Generator g1(42), g2(42), g3(42);
    const Td s1 = f.sample(6, g1, 1.0).value();
    const Td s_half = f.sample(6, g2, 0.5).value();
    const Td eps = normal<double>(Shape{6, 3}, g3);
    CHECK(max_abs_diff(f.inverse(V(eps)).value(), s1) == 0.0);
    CHECK(max_abs_diff(s_half, Td(c + 0.5 * (s1 - c))) <= 1e-12);

    CHECK_THROWS_WITH_AS(f.sample(4, gen, 0.0), doctest::Contains("temperature must be positive"), Error);
    CHECK_THROWS_WITH_AS(f.sample(0, gen), doctest::Contains("positive"), Error);
    CHECK_THROWS_WITH_AS(f.log_prob(V(Td::zeros(Shape{2, 4}))), doctest::Contains("Flow: expected input [N,3], got [2,4]"),
                         Error);
    CHECK_THROWS_WITH_AS(f.add<flow::Squeeze>(), doctest::Contains("even H and W, got [3]"), Error);
}

// A 2-D "banana" with a closed-form density:
//   x₁ ~ N(0, 1),   x₂ | x₁ ~ N(b (x₁² - 1), σ²),   b = 1, σ = 0.5,
//   log p(x) = log N(x₁; 0, 1) + log N(x₂; b (x₁² - 1), σ²).
// A RealNVP of affine couplings on alternating halves is trained by maximum likelihood.
// On fresh test points the mean of log p(x) - log q(x) estimates KL(p || q) ≥ 0, with
// standard error SE = sd/√M from the same M points.
// Tolerance: KL ≤ 0.05 nats (+ 4 SE). The best Gaussian fit has KL = ½ log((2b² + σ²)/σ²)
// = ½ log 9 = 1.10 nats (Var x₂ = 2b² + σ², independent of x₁ in covariance), so the check
// demands that the flow capture the curvature (≤ 5% of that gap), and a flow whose
// log-determinant were wrong would not be normalised: its estimate could go below
// -4 SE, which the lower bound catches. 4 SE: a normal tail of 6e-5.
TEST_CASE("a RealNVP trained on a 2-D banana reaches the true test log-likelihood") {
    OneThread one_thread;
    constexpr double b = 1.0, sigma = 0.5;
    auto sample_banana = [&](Index n, Generator& g) {
        const Tensor<double> e = normal<double>(Shape{n, 2}, g);
        Tensor<float> x = Tensor<float>::empty(Shape{n, 2});
        for (Index i = 0; i < n; ++i) {
            const double x1 = e.data()[2 * i];
            x.data()[2 * i] = static_cast<float>(x1);
            x.data()[2 * i + 1] = static_cast<float>(b * (x1 * x1 - 1) + sigma * e.data()[2 * i + 1]);
        }
        return x;
    };
    auto true_log_prob = [&](double x1, double x2) {
        const double r = (x2 - b * (x1 * x1 - 1)) / sigma;
        return -0.5 * x1 * x1 - 0.5 * r * r - std::log(2 * std::numbers::pi) - std::log(sigma);
    };

    Generator gen(11);
    flow::Flow<float> f(Shape{2});
    f.add<flow::ActNorm>(2);
    for (int k = 0; k < 6; ++k) f.add(flow::affine_coupling_mlp<float>(2, 32, k % 2 == 1, gen));

    Generator test_gen(12);
    const Tensor<float> test = sample_banana(20000, test_gen);
    auto kl_estimate = [&](double& se) {
        NoGrad no_grad;
        const Tensor<float> lq = f.log_prob(Var<float>(test)).value();
        const Index M = test.dim(0);
        double m = 0, ss = 0;
        std::vector<double> d(static_cast<std::size_t>(M));
        for (Index i = 0; i < M; ++i) {
            d[static_cast<std::size_t>(i)] = true_log_prob(test.data()[2 * i], test.data()[2 * i + 1]) - lq.data()[i];
            m += d[static_cast<std::size_t>(i)];
        }
        m /= static_cast<double>(M);
        for (double v : d) ss += (v - m) * (v - m);
        se = std::sqrt(ss / static_cast<double>(M - 1) / static_cast<double>(M));
        return m;
    };

    Generator data_gen(13);
    f(Var<float>(sample_banana(512, data_gen)));  // ActNorm's data-dependent initialisation
    double se0 = 0;
    const double kl_before = kl_estimate(se0);
    Adam<float> opt(f.parameters(), {.lr = 3e-3});
    for (int step = 0; step < 1500; ++step) {
        opt.zero_grad();
        const Var<float> nll = mean(Var<float>(-f.log_prob(Var<float>(sample_banana(256, data_gen)))));
        nll.backward();
        opt.step();
    }
    double se = 0;
    const double kl = kl_estimate(se);
    MESSAGE("KL(p||q) before training ", kl_before, ", after ", kl, " ± ", se, " nats");
    CHECK(kl_before > 0.5);  // the untrained flow is far off, so the check below can fail
    CHECK(kl <= 0.05 + 4 * se);
    CHECK(kl >= -4 * se);
}

TEST_CASE("float smoke test: an image flow inverts, has finite bits/dim and trains") {
    OneThread one_thread;
    Generator gen(14);
    flow::Flow<float> f(Shape{1, 4, 4});
    f.add<flow::LogitTransform>(0.05);
    f.add(flow::affine_coupling_conv<float>(flow::checkerboard_mask<float>(1, 4, 4), 8, gen));
    f.add<flow::Squeeze>();
    f.add<flow::ActNorm>(4);
    f.add<flow::InvertibleConv1x1>(4, gen);
    f.add(flow::affine_coupling_conv<float>(flow::channel_mask<float>(4, 2, 2), 8, gen));
    f.add(flow::additive_coupling_conv<float>(flow::channel_mask<float>(4, 2, 2, true), 8, gen));
    Tensor<float> pixels = uniform<float>(Shape{8, 1, 4, 4}, gen, 0.0f, 256.0f);
    for (Index i = 0; i < pixels.numel(); ++i) pixels.data()[i] = std::min(255.0f, std::floor(pixels.data()[i]));
    const Tensor<float> x = flow::dequantize_pixels(pixels, gen);
    {
        NoGrad no_grad;
        f(Var<float>(x));
    }
    perturb_parameters(f, 3, 0.1);
    {
        NoGrad no_grad;
        const Tensor<float> back = f.inverse(f(Var<float>(x))).value();
        float worst = 0;
        for (Index i = 0; i < x.numel(); ++i) worst = std::max(worst, std::fabs(back.data()[i] - x.data()[i]));
        CHECK(worst <= 1e-4f);
        const Tensor<float> s = f.sample(3, gen, 0.7).value();
        CHECK(s.shape() == Shape{3, 1, 4, 4});
        bool finite = true;
        for (Index i = 0; i < s.numel(); ++i) finite = finite && std::isfinite(s.data()[i]);
        CHECK(finite);
    }
    Adam<float> opt(f.parameters(), {.lr = 1e-3});
    double first = 0, last = 0;
    for (int step = 0; step < 20; ++step) {
        opt.zero_grad();
        const Var<float> bpd = mean(flow::bits_per_dim(f.log_prob(Var<float>(x)), 16));
        bpd.backward();
        opt.step();
        (step == 0 ? first : last) = bpd.item();
    }
    CHECK(std::isfinite(first));
    CHECK(last < first);  // 20 Adam steps on one batch lower its bits/dim
}
