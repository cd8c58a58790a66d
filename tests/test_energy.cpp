// Energy-based objectives (include/ember/energy/): contrastive loss and energy magnitude,
// gradient penalties (R1, WGAN-GP, one-sided), EBGAN's energy, margin and pulling-away.
//
// Every value is compared with a direct computation in plain double (closed-form input
// gradients of the critics, double loops); every loss is gradchecked, and the penalties,
// whose first derivative in the parameters is already a second derivative of the critic,
// are gradgradchecked too (third order).
//
// Tolerances. Values: the library and the references add the same O(10) terms in a
// different order, so they agree to a few ulps; 1e-12 relative leaves a margin of ~100.
// Derivatives: gradcheck's central differences with h = 1e-6 have truncation error
// O(h²·f''') ≈ 1e-12 and rounding error ≈ ε·|f|/h ≈ 1e-10 for |f| ~ 1; its defaults
// (atol 1e-5, rtol 1e-4) are far above both and far below the O(1) error of a wrong
// derivative.
#include <doctest/doctest.h>

#include <cmath>
#include <ember/ember.hpp>
#include <ember/energy/energy.hpp>
#include <vector>

using namespace ember;

namespace {

using V = Var<double>;
using Vs = std::vector<V>;
using Ts = std::vector<Tensor<double>>;

constexpr double kValueTol = 1e-12;

bool close(double got, double want, double tol = kValueTol) { return std::fabs(got - want) <= tol * (1 + std::fabs(want)); }

// ---- a small critic: U(x) = W2 tanh(W1 x + b1) + b2, raw Vars, x [B, D] -> [B, 1] ----------
constexpr Index kD = 3, kH = 4;

Ts mlp_params(std::uint64_t seed) {
    Generator g(seed);
    return {normal<double>({kH, kD}, g, 0.0, 0.8), normal<double>({kH}, g, 0.0, 0.5), normal<double>({1, kH}, g, 0.0, 0.8),
            normal<double>({1}, g)};
}

V mlp(const V& x, const Vs& p) { return linear(V(tanh(linear(x, p[0], p[1]))), p[2], p[3]); }

Vs as_vars(const Ts& ts, bool requires_grad = false) {
    Vs out;
    for (const auto& t : ts) out.emplace_back(t, requires_grad);
    return out;
}

// ∇_x U at one sample x (row `i` of X), in closed form: W1ᵀ (W2ᵀ ⊙ (1 - h²)), h = tanh(W1 x + b1).
std::vector<double> mlp_input_grad(const Ts& p, const Tensor<double>& X, Index i) {
    std::vector<double> g(static_cast<std::size_t>(kD), 0.0);
    for (Index j = 0; j < kH; ++j) {
        double a = p[1].at({j});
        for (Index k = 0; k < kD; ++k) a += p[0].at({j, k}) * X.at({i, k});
        const double h = std::tanh(a), s = p[2].at({0, j}) * (1 - h * h);
        for (Index k = 0; k < kD; ++k) g[static_cast<std::size_t>(k)] += p[0].at({j, k}) * s;
    }
    return g;
}

double norm(const std::vector<double>& g) {
    double s = 0;
    for (double v : g) s += v * v;
    return std::sqrt(s);
}

// The per-sample ε that random_interpolation draws from a fresh Generator(seed): the same
// uniform draw of shape [B, 1].
std::vector<double> epsilons(std::uint64_t seed, Index B) {
    Generator g(seed);
    return uniform<double>({B, 1}, g).to_vector();
}

Tensor<double> interpolate_ref(const Tensor<double>& x, const Tensor<double>& xf, const std::vector<double>& eps) {
    Tensor<double> out = Tensor<double>::empty(x.shape());
    for (Index i = 0; i < x.dim(0); ++i)
        for (Index k = 0; k < x.dim(1); ++k)
            out.at({i, k}) = eps[static_cast<std::size_t>(i)] * x.at({i, k}) + (1 - eps[static_cast<std::size_t>(i)]) * xf.at({i, k});
    return out;
}

// Reference penalties from per-sample gradient norms: kind 0 = R1 (n²), 1 = (n-1)², 2 = max(0, n-1)².
double penalty_ref(const Ts& p, const Tensor<double>& X, int kind, double lambda) {
    double total = 0;
    for (Index i = 0; i < X.dim(0); ++i) {
        const double n = norm(mlp_input_grad(p, X, i));
        total += kind == 0 ? n * n : kind == 1 ? (n - 1) * (n - 1) : std::pow(std::max(0.0, n - 1), 2);
    }
    return lambda * total / static_cast<double>(X.dim(0));
}

void check_first_and_second_order(const VarFunction& f, const Ts& inputs, bool second = true) {
    const CheckResult first = gradcheck(f, inputs);
    CHECK_MESSAGE(first.ok, "gradcheck: ", first.message);
    if (second) {
        const CheckResult sec = gradgradcheck(f, inputs);
        CHECK_MESSAGE(sec.ok, "gradgradcheck: ", sec.message);
    }
}

}  // namespace

// ---- contrastive loss and energy magnitude -----------------------------------------------

TEST_CASE("contrastive_loss: mean U(x) - mean U(x̃), value and gradients") {
    const Tensor<double> up = Tensor<double>::from({3}, {0.5, -1.0, 2.0});
    const Tensor<double> un = Tensor<double>::from({2, 1}, {1.5, -0.25});
    CHECK(close(energy::contrastive_loss(V(up), V(un)).item(), (0.5 - 1.0 + 2.0) / 3 - (1.5 - 0.25) / 2));
    // ∂L/∂u_pos = 1/B⁺, ∂L/∂u_neg = -1/B⁻ (the negative energies keep their gradient).
    V a(up, true), b(un, true);
    energy::contrastive_loss(a, b).backward();
    for (Index i = 0; i < 3; ++i) CHECK(close(a.grad().flat(i), 1.0 / 3));
    for (Index i = 0; i < 2; ++i) CHECK(close(b.grad().flat(i), -0.5));
    check_first_and_second_order([](const Vs& v) { return energy::contrastive_loss(v[0], v[1]); }, {up, un});

    CHECK_THROWS_WITH_AS(energy::contrastive_loss(V(Tensor<double>::zeros({3, 2})), V(un)),
                         doctest::Contains("shape [B] or [B,1]"), Error);
}

TEST_CASE("contrastive_loss from an energy function: both phases reach θ, nothing reaches the negatives' source") {
    // U(x) = θ·x (linear), so ∇_θ L = mean_i x_i - mean_j x̃_j exactly. The negatives come
    // from a "generator" x̃ = x0 + φ whose parameter φ must receive no gradient.
    Generator gen(3);
    const Tensor<double> x = normal<double>({5, kD}, gen), x0 = normal<double>({4, kD}, gen);
    V theta(normal<double>({1, kD}, gen), true), phi(normal<double>({kD}, gen), true);
    auto U = [&](const V& in) { return linear(in, theta); };
    const V x_neg = x0 + phi;
    const V loss = energy::contrastive_loss(U, V(x), x_neg);
    double want = 0;
    for (Index k = 0; k < kD; ++k) {
        double mp = 0, mn = 0;
        for (Index i = 0; i < 5; ++i) mp += x.at({i, k}) / 5;
        for (Index j = 0; j < 4; ++j) mn += x_neg.value().at({j, k}) / 4;
        want += theta.value().at({0, k}) * (mp - mn);
    }
    CHECK(close(loss.item(), want));
    loss.backward();
    for (Index k = 0; k < kD; ++k) {
        double mp = 0, mn = 0;
        for (Index i = 0; i < 5; ++i) mp += x.at({i, k}) / 5;
        for (Index j = 0; j < 4; ++j) mn += x_neg.value().at({j, k}) / 4;
        CHECK(close(theta.grad().at({0, k}), mp - mn));
    }
    CHECK_FALSE(phi.grad().defined());  // the negatives were detached
}

TEST_CASE("magnitude_penalty: α (mean U(x)² + mean U(x̃)²)") {
    const Tensor<double> up = Tensor<double>::from({3}, {0.5, -1.0, 2.0});
    const Tensor<double> un = Tensor<double>::from({2}, {1.5, -0.25});
    const double want = 0.3 * ((0.25 + 1.0 + 4.0) / 3 + (2.25 + 0.0625) / 2);
    CHECK(close(energy::magnitude_penalty(V(up), V(un), 0.3).item(), want));
    check_first_and_second_order([](const Vs& v) { return energy::magnitude_penalty(v[0], v[1], 0.3); }, {up, un});
    CHECK_THROWS_WITH_AS(energy::magnitude_penalty(V(up), V(un), -1.0), doctest::Contains("alpha"), Error);
}

// ---- gradient penalties ------------------------------------------------------------------

TEST_CASE("r1_penalty: λ E||∇_x U(x)||² against the closed-form input gradient, for a Module and raw Vars") {
    Generator gen(5);
    const Tensor<double> x = normal<double>({6, kD}, gen);
    const Ts p = mlp_params(7);
    const double lambda = 2.5;

    // Raw Vars.
    const Vs pv = as_vars(p, true);
    const V r1 = energy::r1_penalty([&](const V& in) { return mlp(in, pv); }, V(x), lambda);
    CHECK(close(r1.item(), penalty_ref(p, x, 0, lambda)));

    // The same critic as an nn::Sequential (any callable works, a Module included).
    nn::Sequential<double> net;
    net.add<nn::Linear>(kD, kH, gen);
    net.add<nn::Tanh>();
    net.add<nn::Linear>(kH, 1, gen);
    const auto params = net.parameters();
    for (std::size_t i = 0; i < 4; ++i) params[i].value().copy_from(p[i]);
    const V r1m = energy::r1_penalty(net, V(x), lambda);
    CHECK(close(r1m.item(), penalty_ref(p, x, 0, lambda)));
    // Differentiable in the module's parameters, with the same gradient as the raw critic
    // (b2 does not affect ∇_x U, so it gets none).
    r1m.backward();
    const Vs raw = grad(r1, pv);
    for (std::size_t i = 0; i < 3; ++i) {
        REQUIRE(params[i].grad().defined());
        for (Index k = 0; k < p[i].numel(); ++k) CHECK(close(params[i].grad().flat(k), raw[i].value().flat(k)));
    }
    CHECK((!params[3].grad().defined() || params[3].grad().flat(0) == 0.0));

    // d/dθ and d²/dθ² of the penalty (second and third derivatives of the critic).
    check_first_and_second_order(
        [x, lambda](const Vs& q) { return energy::r1_penalty([&](const V& in) { return mlp(in, q); }, V(x), lambda); }, p);
}

TEST_CASE("r1_penalty and grad_sq_norm_per_sample agree; reusing the forward pass") {
    Generator gen(8);
    const Tensor<double> xt = normal<double>({4, kD}, gen);
    const Ts p = mlp_params(9);
    const Vs pv = as_vars(p, true);
    V x(xt, true);
    const V u = mlp(x, pv);
    const V per = energy::grad_sq_norm_per_sample(u, x);
    REQUIRE(per.shape() == Shape{4});
    for (Index i = 0; i < 4; ++i) CHECK(close(per.value().flat(i), std::pow(norm(mlp_input_grad(p, xt, i)), 2)));
    CHECK_THROWS_WITH_AS(energy::grad_sq_norm_per_sample(u, V(xt)), doctest::Contains("must require grad"), Error);
    // Reusing the forward: the same numbers as r1_penalty, which runs its own forward.
    const V r1 = energy::r1_penalty([&](const V& in) { return mlp(in, pv); }, V(xt), 1.0);
    CHECK(close(mean(per).item(), r1.item()));
    {
        NoGrad no_grad;
        CHECK_THROWS_WITH_AS(energy::grad_sq_norm_per_sample(u, x), doctest::Contains("grad mode off"), Error);
    }
}

TEST_CASE("wgan_gp_penalty: λ E(||∇D(x̂)|| - 1)² with ε drawn per sample") {
    Generator gen(11);
    const Index B = 8;
    const Tensor<double> x = normal<double>({B, kD}, gen), xf = normal<double>({B, kD}, gen, 1.0, 2.0);
    const Ts p = mlp_params(13);
    const Vs pv = as_vars(p, true);
    const double lambda = 10;

    SUBCASE("value at the interpolates, ε reproduced from the same seed") {
        Generator g(21);
        const V gp = energy::wgan_gp_penalty([&](const V& in) { return mlp(in, pv); }, V(x), V(xf), g, lambda);
        const std::vector<double> eps = epsilons(21, B);
        const double want = penalty_ref(p, interpolate_ref(x, xf, eps), 1, lambda);
        CHECK(close(gp.item(), want));
        // With one ε shared by the batch the value would differ (so the check above sees it).
        const double shared = penalty_ref(p, interpolate_ref(x, xf, std::vector<double>(B, eps[0])), 1, lambda);
        CHECK(std::fabs(shared - want) > 1e-6);
        // The generator advanced: a second call draws new ε and gives another value.
        const V gp2 = energy::wgan_gp_penalty([&](const V& in) { return mlp(in, pv); }, V(x), V(xf), g, lambda);
        CHECK(std::fabs(gp2.item() - gp.item()) > 1e-6);
    }
    SUBCASE("the penalty at interpolates of the caller's ε: the same value as the reference") {
        const std::vector<double> eps = {0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0};
        const Tensor<double> e = Tensor<double>::from({B}, std::vector<double>(eps));
        const Tensor<double> xh = energy::interpolate(x, xf, e);
        const Tensor<double> ref = interpolate_ref(x, xf, eps);
        for (Index i = 0; i < xh.numel(); ++i) CHECK(close(xh.flat(i), ref.flat(i)));
        const V gp = energy::wgan_gp_penalty_at([&](const V& in) { return mlp(in, pv); }, xh, lambda);
        CHECK(close(gp.item(), penalty_ref(p, ref, 1, lambda)));
        const V one_sided = energy::one_sided_gp_penalty_at([&](const V& in) { return mlp(in, pv); }, xh, lambda);
        CHECK(close(one_sided.item(), penalty_ref(p, ref, 2, lambda)));
        // The random form is this at random_interpolation's ε.
        Generator g1(21), g2(21);
        CHECK(energy::wgan_gp_penalty([&](const V& in) { return mlp(in, pv); }, V(x), V(xf), g1, lambda).item() ==
              energy::wgan_gp_penalty_at([&](const V& in) { return mlp(in, pv); },
                                         energy::random_interpolation(x, xf, g2), lambda)
                  .item());
        CHECK_THROWS_WITH_AS(energy::interpolate(x, xf, Tensor<double>::ones({B, 1})),
                             doctest::Contains("eps must have shape [8]"), Error);
    }
    SUBCASE("random_interpolation: one ε in [0,1] per sample, shared by its features, different across samples") {
        Generator g(21);
        const Tensor<double> xh = energy::random_interpolation(x, xf, g);
        const std::vector<double> eps = epsilons(21, B);
        double lo = 1, hi = 0;
        for (Index i = 0; i < B; ++i) {
            // x̂_i - x̃_i = ε_i (x_i - x̃_i) for every feature k.
            for (Index k = 0; k < kD; ++k)
                CHECK(close(xh.at({i, k}) - xf.at({i, k}), eps[static_cast<std::size_t>(i)] * (x.at({i, k}) - xf.at({i, k}))));
            CHECK((eps[static_cast<std::size_t>(i)] >= 0 && eps[static_cast<std::size_t>(i)] <= 1));
            lo = std::min(lo, eps[static_cast<std::size_t>(i)]);
            hi = std::max(hi, eps[static_cast<std::size_t>(i)]);
        }
        // 8 independent U[0,1] draws span less than 0.1 with probability < 8·0.1⁷ ≈ 1e-6.
        CHECK(hi - lo > 0.1);
    }
    SUBCASE("linear critic D(x) = wᵀx + b: ∇D = w everywhere, so the penalty is λ(||w|| - 1)² for any ε") {
        const Tensor<double> w = Tensor<double>::from({1, kD}, {0.6, -1.2, 0.9});
        const V wv(w, true), bv(Tensor<double>::from({1}, {0.3}), true);
        auto D = [&](const V& in) { return linear(in, wv, bv); };
        const double nw = std::sqrt(0.36 + 1.44 + 0.81);
        for (std::uint64_t seed : {1u, 2u, 3u}) {
            Generator g(seed);
            CHECK(close(energy::wgan_gp_penalty(D, V(x), V(xf), g, lambda).item(), lambda * (nw - 1) * (nw - 1)));
        }
        // d/dw λ(||w|| - 1)² = 2λ(||w|| - 1) w/||w||; nothing reaches b.
        Generator g(4);
        energy::wgan_gp_penalty(D, V(x), V(xf), g, lambda).backward();
        for (Index k = 0; k < kD; ++k) CHECK(close(wv.grad().flat(k), 2 * lambda * (nw - 1) * w.flat(k) / nw));
        CHECK((!bv.grad().defined() || bv.grad().flat(0) == 0.0));
    }
    SUBCASE("first and second derivatives in the critic's parameters") {
        check_first_and_second_order(
            [x, xf](const Vs& q) {
                Generator g(21);  // the same ε at every evaluation
                return energy::wgan_gp_penalty([&](const V& in) { return mlp(in, q); }, V(x), V(xf), g, 10.0);
            },
            p);
    }
}

TEST_CASE("wgan_gp_penalty at ∇D = 0: value λ, finite zero subgradient") {
    // W1 = 0 makes U constant in x: ||∇D|| = 0 for every sample, penalty λ(0 - 1)² = λ.
    // There the exact norm's derivative is taken as 0 (penalty.hpp), so the gradient in
    // the parameters is finite (0 through the norm) rather than NaN.
    Generator gen(2);
    const Tensor<double> x = normal<double>({4, kD}, gen), xf = normal<double>({4, kD}, gen);
    Ts p = mlp_params(3);
    p[0].fill(0.0);
    const Vs pv = as_vars(p, true);
    Generator g(5);
    const V gp = energy::wgan_gp_penalty([&](const V& in) { return mlp(in, pv); }, V(x), V(xf), g, 3.0);
    CHECK(close(gp.item(), 3.0));
    const Vs grads = grad(gp, pv);
    for (const auto& gr : grads)
        for (Index i = 0; i < gr.numel(); ++i) CHECK(gr.value().flat(i) == 0.0);
}

TEST_CASE("one_sided_gp_penalty: λ E max(0, ||∇D(x̂)|| - 1)²") {
    Generator gen(17);
    const Index B = 6;
    const Tensor<double> x = normal<double>({B, kD}, gen), xf = normal<double>({B, kD}, gen);
    SUBCASE("linear critics: zero below norm 1, λ(||w|| - 1)² above") {
        const V small(Tensor<double>::from({1, kD}, {0.3, 0.4, 0.0}), true);  // ||w|| = 0.5
        const V big(Tensor<double>::from({1, kD}, {1.2, 1.6, 0.0}), true);    // ||w|| = 2
        Generator g(1);
        CHECK(energy::one_sided_gp_penalty([&](const V& in) { return linear(in, small); }, V(x), V(xf), g, 5.0).item() == 0.0);
        CHECK(close(energy::one_sided_gp_penalty([&](const V& in) { return linear(in, big); }, V(x), V(xf), g, 5.0).item(), 5.0));
    }
    SUBCASE("tanh MLP: value, first and second derivatives, with samples on both sides of norm 1") {
        Ts p = mlp_params(19);
        for (Index i = 0; i < p[2].numel(); ++i) p[2].data()[i] *= 1.5;  // some gradient norms above 1
        const std::vector<double> eps = epsilons(23, B);
        const Tensor<double> xh = interpolate_ref(x, xf, eps);
        int above = 0;
        for (Index i = 0; i < B; ++i) {
            const double n = norm(mlp_input_grad(p, xh, i));
            above += n > 1;
            // relu(n-1)² has a jump in its second derivative at n = 1; the finite differences
            // of the third-order check must not straddle it.
            REQUIRE(std::fabs(n - 1) > 1e-3);
        }
        REQUIRE(above > 0);
        REQUIRE(above < B);
        const Vs pv = as_vars(p, true);
        Generator g(23);
        const V os = energy::one_sided_gp_penalty([&](const V& in) { return mlp(in, pv); }, V(x), V(xf), g, 4.0);
        CHECK(close(os.item(), penalty_ref(p, xh, 2, 4.0)));
        check_first_and_second_order(
            [x, xf](const Vs& q) {
                Generator g2(23);
                return energy::one_sided_gp_penalty([&](const V& in) { return mlp(in, q); }, V(x), V(xf), g2, 4.0);
            },
            p);
    }
}

TEST_CASE("gradient penalties: clear errors") {
    Generator gen(1);
    const V x(normal<double>({4, kD}, gen)), xf(normal<double>({4, kD}, gen));
    const V w(normal<double>({2, kD}, gen), true);
    auto two_outputs = [&](const V& in) { return linear(in, w); };  // [B, 2]: not per sample
    CHECK_THROWS_WITH_AS(energy::r1_penalty(two_outputs, x, 1.0), doctest::Contains("shape [B] or [B,1]"), Error);
    const V w1(normal<double>({1, kD}, gen), true);
    auto wrong_batch = [&](const V& in) { return slice(linear(in, w1), 0, 0, 2); };
    CHECK_THROWS_WITH_AS(energy::r1_penalty(wrong_batch, x, 1.0), doctest::Contains("returned 2 values for a batch of 4"), Error);
    auto D = [&](const V& in) { return linear(in, w1); };
    CHECK_THROWS_WITH_AS(energy::wgan_gp_penalty(D, x, V(normal<double>({3, kD}, gen)), gen, 1.0),
                         doctest::Contains("same shape"), Error);
    CHECK_THROWS_WITH_AS(energy::r1_penalty(D, x, -1.0), doctest::Contains("lambda"), Error);
    {
        NoGrad no_grad;
        CHECK_THROWS_WITH_AS(energy::r1_penalty(D, x, 1.0), doctest::Contains("grad mode off"), Error);
    }
}

// ---- EBGAN ---------------------------------------------------------------------------------

TEST_CASE("autoencoder_energy: per-sample mean squared reconstruction error") {
    Generator gen(4);
    const Tensor<double> x = normal<double>({3, 2, 2}, gen), r = normal<double>({3, 2, 2}, gen);
    const V e = energy::autoencoder_energy(V(x), V(r));
    REQUIRE(e.shape() == Shape{3});
    for (Index i = 0; i < 3; ++i) {
        double s = 0;
        for (Index k = 0; k < 4; ++k) s += std::pow(r.flat(i * 4 + k) - x.flat(i * 4 + k), 2);
        CHECK(close(e.value().flat(i), s / 4));
    }
    check_first_and_second_order([](const Vs& v) { return energy::autoencoder_energy(v[0], v[1]); }, {x, r});
    CHECK_THROWS_WITH_AS(energy::autoencoder_energy(V(x), V(normal<double>({3, 4}, gen))), doctest::Contains("same shape"), Error);
}

TEST_CASE("EBGAN margin, discriminator and generator losses") {
    const Tensor<double> d_real = Tensor<double>::from({3}, {0.5, 1.0, 0.25});
    const Tensor<double> d_fake = Tensor<double>::from({4, 1}, {0.5, 3.0, 2.5, 1.0});
    const double m = 2.0;
    const V h = energy::margin_hinge(V(d_fake), m);
    const std::vector<double> want_h = {1.5, 0.0, 0.0, 1.0};
    for (Index i = 0; i < 4; ++i) CHECK(close(h.value().flat(i), want_h[static_cast<std::size_t>(i)]));
    CHECK(close(energy::ebgan_discriminator_loss(V(d_real), V(d_fake), m).item(), 1.75 / 3 + 2.5 / 4));
    CHECK(close(energy::ebgan_generator_loss(V(d_fake)).item(), 7.0 / 4));
    // Away from the hinge's kink (d_fake = m) the losses are smooth.
    check_first_and_second_order([](const Vs& v) { return energy::ebgan_discriminator_loss(v[0], v[1], 2.0); }, {d_real, d_fake});
    check_first_and_second_order([](const Vs& v) { return energy::ebgan_generator_loss(v[0]); }, {d_fake});
    CHECK_THROWS_WITH_AS(energy::margin_hinge(V(d_fake), 0.0), doctest::Contains("margin must be positive"), Error);
}

TEST_CASE("pulling_away: the paper's mean squared off-diagonal cosine, against a double loop") {
    Generator gen(6);
    const Index B = 5, K = 4;
    const Tensor<double> s = normal<double>({B, K}, gen);
    double want = 0;
    for (Index i = 0; i < B; ++i)
        for (Index j = 0; j < B; ++j) {
            if (i == j) continue;
            double dot = 0, ni = 0, nj = 0;
            for (Index k = 0; k < K; ++k) {
                dot += s.at({i, k}) * s.at({j, k});
                ni += s.at({i, k}) * s.at({i, k});
                nj += s.at({j, k}) * s.at({j, k});
            }
            want += dot * dot / (ni * nj);
        }
    want /= static_cast<double>(B * (B - 1));
    CHECK(close(energy::pulling_away(V(s)).item(), want));
    check_first_and_second_order([](const Vs& v) { return energy::pulling_away(v[0]); }, {s});

    // Closed forms for two codes: parallel or opposite -> 1, orthogonal -> 0; the seed's
    // unsquared-with-diagonal sum would give 4, 0 and 2 instead.
    CHECK(close(energy::pulling_away(V(Tensor<double>::from({2, 2}, {1, 2, 2, 4}))).item(), 1.0));
    CHECK(close(energy::pulling_away(V(Tensor<double>::from({2, 2}, {1, 2, -2, -4}))).item(), 1.0));
    CHECK(close(energy::pulling_away(V(Tensor<double>::from({2, 2}, {1, 2, -2, 1}))).item(), 0.0));
    // Codes of rank > 2 are flattened per sample.
    CHECK(close(energy::pulling_away(V(s.reshape({B, 2, 2}))).item(), want));
    // A zero code has cosine 0 with the others (no 0/0): rows (1,1), (0,0), (1,0) leave
    // cos²(row 0, row 2) = 1/2, counted twice among the 6 ordered pairs.
    const Tensor<double> z = Tensor<double>::from({3, 2}, {1, 1, 0, 0, 1, 0});
    const V zv(z, true);
    const V pz = energy::pulling_away(zv);
    CHECK(close(pz.item(), 2 * 0.5 / 6));
    pz.backward();
    for (Index i = 0; i < z.numel(); ++i) CHECK(std::isfinite(zv.grad().flat(i)));

    CHECK_THROWS_WITH_AS(energy::pulling_away(V(Tensor<double>::ones({1, 4}))), doctest::Contains("at least 2 samples"), Error);
    // The generator loss adds λ_PT f_PT(S).
    const Tensor<double> d = Tensor<double>::from({B}, {1, 2, 3, 4, 5});
    CHECK(close(energy::ebgan_generator_loss(V(d), V(s), 0.1).item(), 3.0 + 0.1 * want));
}
