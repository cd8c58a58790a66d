// Divergences (include/ember/divergence/): the f-divergence family with its variational
// bounds and f-GAN losses, and the classic / Wasserstein / hinge GAN losses.
//
// Exact expectations. P and Q are discrete on four points with probabilities in tenths,
// p = (1,2,3,4)/10 and q = (4,3,2,1)/10. A batch of 10 samples holding point k exactly
// 10·p_k times has batch mean = E_P exactly, so the library's batch-mean losses compute
// the true expectations, up to rounding (sums of 10 terms of size <= 10: error < 1e-13),
// and the variational bound at the optimal critic must equal D_f(P||Q) = Σ q f(p/q) to
// 1e-12.
//
// Derivatives: gradcheck / gradgradcheck defaults (atol 1e-5, rtol 1e-4) against central
// differences with h = 1e-6 (truncation ≈ 1e-12, rounding ≈ 1e-10 for O(1) values).
#include <doctest/doctest.h>

#include <cmath>
#include <ember/divergence/divergence.hpp>
#include <ember/ember.hpp>
#include <numbers>
#include <string>
#include <vector>

using namespace ember;

namespace {

using V = Var<double>;
using Vs = std::vector<V>;
using Ts = std::vector<Tensor<double>>;

bool close(double got, double want, double tol = 1e-12) { return std::fabs(got - want) <= tol * (1 + std::fabs(want)); }

const std::vector<double> kP = {0.1, 0.2, 0.3, 0.4};
const std::vector<double> kQ = {0.4, 0.3, 0.2, 0.1};
const std::vector<int> kCountP = {1, 2, 3, 4};  // 10·p
const std::vector<int> kCountQ = {4, 3, 2, 1};  // 10·q

// A batch of 10 values holding value[k] count[k] times: its mean is Σ_k (count[k]/10) value[k].
Tensor<double> replicate(const std::vector<double>& value, const std::vector<int>& count) {
    std::vector<double> out;
    for (std::size_t k = 0; k < value.size(); ++k)
        for (int c = 0; c < count[k]; ++c) out.push_back(value[k]);
    return Tensor<double>::from({static_cast<Index>(out.size())}, out);
}

// Evaluates an elementwise function of the library on one double.
template <class F>
double at(F&& fn, double x) {
    return Tensor<double>(fn(Tensor<double>::scalar(x))).item();
}

template <class D>
double true_divergence() {
    double d = 0;
    for (std::size_t k = 0; k < kP.size(); ++k) d += kQ[k] * D::f(kP[k] / kQ[k]);
    return d;
}

// v* = g_f⁻¹(f'(p/q)) per point. TV's optimum T* = ±½ lies on the boundary of g_f's range
// (v = ±∞); ½ tanh(±40) rounds to ±½ exactly in double, so ±40 stands for ±∞.
template <class D>
std::vector<double> optimal_v() {
    std::vector<double> v;
    for (std::size_t k = 0; k < kP.size(); ++k) {
        double x = D::activation_inverse(D::f_prime(kP[k] / kQ[k]));
        if (std::isinf(x)) x = std::copysign(40.0, x);
        v.push_back(x);
    }
    return v;
}

}  // namespace

#define ALL_DIVERGENCES fdiv::KL, fdiv::ReverseKL, fdiv::Pearson, fdiv::Neyman, fdiv::Hellinger, fdiv::JensenShannon, fdiv::GAN, fdiv::TotalVariation

TEST_CASE_TEMPLATE("f-divergence: f, f*, g_f and the stable f*(g_f) agree with each other", D, ALL_DIVERGENCES) {
    INFO(std::string(D::name));
    // f(1) = 0, so D_f(P||P) = 0; except for gan, whose f(1) = -log 4 is the value of the
    // game between identical distributions (2·JSD - log 4 at JSD = 0).
    if constexpr (std::is_same_v<D, fdiv::GAN>) CHECK(close(D::f(1.0), -std::log(4.0)));
    else CHECK(D::f(1.0) == 0.0);
    // Fenchel-Young with equality at t = f'(u): f*(f'(u)) = u f'(u) - f(u). This ties the
    // library's f* (an expression) to the plain-double f and f'.
    for (double u : {0.05, 0.3, 0.8, 1.7, 4.0, 20.0}) {
        const double t = D::f_prime(u);
        CHECK(close(at([](const auto& x) { return D::f_star(x); }, t), u * t - D::f(u), 1e-12));
    }
    // g_f maps R into the domain of f*, and activation_inverse inverts it.
    for (double v = -15; v <= 15; v += 0.5) {
        const double t = at([](const auto& x) { return D::activation(x); }, v);
        CHECK(D::domain.contains(t));
        if (std::fabs(v) <= 5) CHECK(close(D::activation_inverse(t), v, 1e-9));
        // The stable closed form equals the naive composition where the latter is accurate
        // (|v| <= 5: the naive forms lose at most a factor e^5 ≈ 150 in relative precision).
        if (std::fabs(v) <= 5)
            CHECK(close(at([](const auto& x) { return D::f_star_activation(x); }, v),
                        at([](const auto& x) { return D::f_star(D::activation(x)); }, v), 1e-12));
    }
    // The stable form is finite for large |v| in float, where the naive one is not always.
    for (float v : {-60.f, -20.f, 20.f, 60.f}) {
        const float s = Tensor<float>(D::f_star_activation(Tensor<float>::scalar(v))).item();
        CHECK(std::isfinite(s));
    }
    // f* outside its domain is an error naming the divergence, not a NaN.
    if (std::isfinite(D::domain.hi)) {
        const double outside = D::domain.hi + 0.5;
        const std::string needle = std::string("'") + D::name + "'";
        CHECK_THROWS_WITH_AS(at([](const auto& x) { return D::f_star(x); }, outside), doctest::Contains(needle.c_str()),
                             Error);
    }
}

TEST_CASE_TEMPLATE("f-divergence: the variational bound at T* = f'(p/q) equals D_f exactly; a perturbed critic is below", D,
                   ALL_DIVERGENCES) {
    INFO(std::string(D::name));
    const double d = true_divergence<D>();
    const std::vector<double> v = optimal_v<D>();
    const V vp(replicate(v, kCountP)), vq(replicate(v, kCountQ));
    CHECK(close(fdiv::variational_bound<D>(vp, vq).item(), d));
    CHECK(close(fdiv::critic_loss<D>(vp, vq).item(), -d));

    // Move T toward an interior point c = g_f(0) of the domain: T' = T* + 0.3 (c - T*)
    // stays in the (convex) domain and differs from T* at every point (T* != c here). The
    // bound is concave in T with T* its unique maximiser, so it must drop; the drop is
    // O(0.3²·curvature) ~ 1e-2, far above the 1e-13 rounding of the sums.
    const double c = at([](const auto& x) { return D::activation(x); }, 0.0);
    std::vector<double> vpert;
    for (std::size_t k = 0; k < v.size(); ++k) {
        const double t = at([](const auto& x) { return D::activation(x); }, v[k]);
        vpert.push_back(D::activation_inverse(t + 0.3 * (c - t)));
    }
    const double perturbed = fdiv::variational_bound<D>(V(replicate(vpert, kCountP)), V(replicate(vpert, kCountQ))).item();
    CHECK(perturbed < d - 1e-10);
}

TEST_CASE_TEMPLATE("f-divergence losses: values and first/second derivatives", D, ALL_DIVERGENCES) {
    INFO(std::string(D::name));
    Generator gen(3);
    const Tensor<double> vp = uniform<double>({5}, gen, -2.0, 2.0), vq = uniform<double>({4, 1}, gen, -2.0, 2.0);
    double ep = 0, eq = 0, eg = 0;
    for (Index i = 0; i < 5; ++i) ep += at([](const auto& x) { return D::activation(x); }, vp.flat(i)) / 5;
    for (Index i = 0; i < 4; ++i) {
        eq += at([](const auto& x) { return D::f_star(D::activation(x)); }, vq.flat(i)) / 4;
        eg += at([](const auto& x) { return D::activation(x); }, vq.flat(i)) / 4;
    }
    CHECK(close(fdiv::critic_loss<D>(V(vp), V(vq)).item(), eq - ep, 1e-12));
    CHECK(close(fdiv::generator_loss<D>(V(vq)).item(), -eq, 1e-12));
    CHECK(close(fdiv::generator_loss_alt<D>(V(vq)).item(), -eg, 1e-12));
    for (const CheckResult& r : {gradcheck([](const Vs& x) { return fdiv::critic_loss<D>(x[0], x[1]); }, {vp, vq}),
                                 gradgradcheck([](const Vs& x) { return fdiv::critic_loss<D>(x[0], x[1]); }, {vp, vq}),
                                 gradcheck([](const Vs& x) { return fdiv::generator_loss<D>(x[0]); }, {vq}),
                                 gradgradcheck([](const Vs& x) { return fdiv::generator_loss<D>(x[0]); }, {vq}),
                                 gradcheck([](const Vs& x) { return fdiv::generator_loss_alt<D>(x[0]); }, {vq}),
                                 gradgradcheck([](const Vs& x) { return fdiv::generator_loss_alt<D>(x[0]); }, {vq})})
        CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("f-divergence: closed-form values of the discrete test pair") {
    // Independent of the structs' f: the textbook definitions on p, q.
    double kl = 0, rkl = 0, pearson = 0, neyman = 0, hell = 0, jsd = 0, tv = 0;
    for (std::size_t k = 0; k < 4; ++k) {
        const double p = kP[k], q = kQ[k], m = (p + q) / 2;
        kl += p * std::log(p / q);
        rkl += q * std::log(q / p);
        pearson += (p - q) * (p - q) / q;
        neyman += (q - p) * (q - p) / p;
        hell += std::pow(std::sqrt(p) - std::sqrt(q), 2);
        jsd += 0.5 * (p * std::log(p / m) + q * std::log(q / m));
        tv += 0.5 * std::fabs(p - q);
    }
    CHECK(close(true_divergence<fdiv::KL>(), kl));
    CHECK(close(true_divergence<fdiv::ReverseKL>(), rkl));
    CHECK(close(true_divergence<fdiv::Pearson>(), pearson));
    CHECK(close(true_divergence<fdiv::Neyman>(), neyman));
    CHECK(close(true_divergence<fdiv::Hellinger>(), hell));
    CHECK(close(true_divergence<fdiv::JensenShannon>(), 2 * jsd));  // the f-GAN table's f gives 2·JSD
    CHECK(close(true_divergence<fdiv::GAN>(), 2 * jsd - std::log(4.0)));
    CHECK(close(true_divergence<fdiv::TotalVariation>(), tv));
}

TEST_CASE("f-divergence: KL between 1-D Gaussians by Monte Carlo, within the derived error (float)") {
    // P = N(0,1), Q = N(1,1): KL(P||Q) = Δ²/2 = 1/2. log p/q = 1/2 - x, so the optimal
    // critic is T*(x) = f'(p/q) = 1 + log p/q = 3/2 - x, and the bound
    // E_P[T*] - E_Q[e^{T*-1}] = 3/2 - E_Q[e^{1/2 - x}] = 3/2 - 1 = 1/2.
    // Its standard error with n independent samples from each: Var_P[T*] = Var(x) = 1,
    // Var_Q[e^{1/2-x}] = E_Q[e^{1-2x}] - 1 = e - 1, so SE = sqrt((1 + e - 1)/n) = sqrt(e/n)
    // = 0.0117 at n = 20000; the check allows 5 SE (two-sided probability 6e-7 of a false
    // failure). Float rounding of the 20000-term sums is at most n·ε·1.5 ≈ 2e-3 < 5 SE.
    const Index n = 20000;
    Generator gen(42);
    const Tensor<float> xp = normal<float>({n}, gen), xq = normal<float>({n}, gen, 1.f, 1.f);
    const Var<float> vp(Tensor<float>(1.5f - xp)), vq(Tensor<float>(1.5f - xq));
    const double se = std::sqrt(std::numbers::e / static_cast<double>(n));
    const double bound = fdiv::variational_bound<fdiv::KL>(vp, vq).item();
    CHECK(std::fabs(bound - 0.5) < 5 * se);
    MESSAGE("KL bound at T*: ", bound, " (true 0.5, SE ", se, ")");

    // Shifting the critic by c lowers the bound by exactly (e^c - 1) - c in expectation
    // (E_P gains c, E_Q[e^{T*-1}] = 1 grows by the factor e^c): 0.1487 for c = 1/2. On the
    // same samples the difference is c - (e^c - 1)·mean_Q(e^{T*-1}), whose SE is
    // (e^c - 1)·sqrt((e - 1)/n) = 0.0060; again 5 SE.
    const float c = 0.5f;
    const double shifted = fdiv::variational_bound<fdiv::KL>(Var<float>(Tensor<float>(vp.value() + c)),
                                                             Var<float>(Tensor<float>(vq.value() + c)))
                               .item();
    const double drop = std::expm1(0.5) - 0.5;
    const double se_diff = std::expm1(0.5) * std::sqrt((std::numbers::e - 1) / static_cast<double>(n));
    CHECK(shifted < bound);
    CHECK(std::fabs((bound - shifted) - drop) < 5 * se_diff);
}

TEST_CASE("f-divergence: choosing by name at run time") {
    const auto names = fdiv::divergence_names();
    REQUIRE(names.size() == std::tuple_size_v<fdiv::All>);
    const std::vector<std::string_view> want = {"kl", "reverse_kl", "pearson", "neyman", "hellinger", "js", "gan", "tv"};
    CHECK(names == want);
    for (std::string_view n : names) {
        const fdiv::AnyDivergence d = fdiv::parse_divergence(n);
        CHECK(fdiv::divergence_name(d) == n);
        // The visitor receives the right type: its critic loss matches the typed call.
        const V vp(Tensor<double>::from({3}, {0.1, -0.4, 0.7})), vq(Tensor<double>::from({2}, {0.3, -0.2}));
        const double via_visit =
            fdiv::visit_divergence(d, [&]<class D>(D) { return fdiv::critic_loss<D>(vp, vq).item(); });
        const std::string_view via_name = fdiv::visit_divergence(d, []<class D>(D) { return std::string_view(D::name); });
        CHECK(via_name == n);
        CHECK(std::isfinite(via_visit));
    }
    CHECK(fdiv::visit_divergence(fdiv::parse_divergence("gan"), []<class D>(D) { return std::is_same_v<D, fdiv::GAN>; }));
    CHECK_THROWS_WITH_AS(fdiv::parse_divergence("KL2"), doctest::Contains("expected one of kl, reverse_kl"), Error);
}

// ---- GAN losses ----------------------------------------------------------------------------

namespace {
double sp(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }
}  // namespace

TEST_CASE("GAN value at D* = p/(p+q) is 2·JSD(p||q) - log 4 (exact, discrete)") {
    // D* = p/(p+q) has logit a* = log(p/q); V = E_p log D* + E_q log(1 - D*) =
    // -discriminator_loss(a*(x_p), a*(x_q)).
    std::vector<double> a;
    double jsd = 0;
    for (std::size_t k = 0; k < 4; ++k) {
        a.push_back(std::log(kP[k] / kQ[k]));
        const double m = (kP[k] + kQ[k]) / 2;
        jsd += 0.5 * (kP[k] * std::log(kP[k] / m) + kQ[k] * std::log(kQ[k] / m));
    }
    const double value = -gan::discriminator_loss(V(replicate(a, kCountP)), V(replicate(a, kCountQ))).item();
    CHECK(close(value, 2 * jsd - std::log(4.0)));
    // Any other discriminator does worse: shift every logit by 0.3.
    for (double& x : a) x += 0.3;
    CHECK(-gan::discriminator_loss(V(replicate(a, kCountP)), V(replicate(a, kCountQ))).item() < value - 1e-10);
}

TEST_CASE("GAN losses from logits: values, stability at large logits, derivatives") {
    const Tensor<double> ar = Tensor<double>::from({3, 1}, {1.5, -0.5, 3.0});
    const Tensor<double> af = Tensor<double>::from({2, 1}, {-2.0, 0.25});
    CHECK(close(gan::discriminator_loss(V(ar), V(af)).item(), (sp(-1.5) + sp(0.5) + sp(-3.0)) / 3 + (sp(-2.0) + sp(0.25)) / 2));
    CHECK(close(gan::generator_loss_minimax(V(af)).item(), -(sp(-2.0) + sp(0.25)) / 2));
    CHECK(close(gan::generator_loss_nonsaturating(V(af)).item(), (sp(2.0) + sp(-0.25)) / 2));
    // Through probabilities: -log σ(a) and -log(1 - σ(a)).
    const double s = 1 / (1 + std::exp(-0.25));
    CHECK(close(gan::generator_loss_nonsaturating(V(Tensor<double>::from({1}, {0.25}))).item(), -std::log(s)));
    CHECK(close(gan::generator_loss_minimax(V(Tensor<double>::from({1}, {0.25}))).item(), std::log(1 - s)));

    // Logits of ±100 in float: D rounds to exactly 0 or 1, log(D) would be -inf; the
    // softplus forms give the exact values (sp(100) = 100, sp(-100) = e^-100 ≈ 0).
    const Var<float> big(Tensor<float>::from({2}, {100.f, -100.f}));
    CHECK(gan::discriminator_loss(big, big).item() == doctest::Approx(100.0).epsilon(1e-6));
    CHECK(gan::generator_loss_nonsaturating(big).item() == doctest::Approx(50.0).epsilon(1e-6));
    CHECK(gan::generator_loss_minimax(big).item() == doctest::Approx(-50.0).epsilon(1e-6));

    // The f-GAN 'gan' divergence is the same game: its critic loss is the discriminator's
    // BCE and its two generator losses are the minimax and non-saturating ones.
    CHECK(close(fdiv::critic_loss<fdiv::GAN>(V(ar), V(af)).item(), gan::discriminator_loss(V(ar), V(af)).item()));
    CHECK(close(fdiv::generator_loss<fdiv::GAN>(V(af)).item(), gan::generator_loss_minimax(V(af)).item()));
    CHECK(close(fdiv::generator_loss_alt<fdiv::GAN>(V(af)).item(), gan::generator_loss_nonsaturating(V(af)).item()));

    for (const CheckResult& r : {gradcheck([](const Vs& x) { return gan::discriminator_loss(x[0], x[1]); }, {ar, af}),
                                 gradgradcheck([](const Vs& x) { return gan::discriminator_loss(x[0], x[1]); }, {ar, af}),
                                 gradcheck([](const Vs& x) { return gan::generator_loss_minimax(x[0]); }, {af}),
                                 gradgradcheck([](const Vs& x) { return gan::generator_loss_minimax(x[0]); }, {af}),
                                 gradcheck([](const Vs& x) { return gan::generator_loss_nonsaturating(x[0]); }, {af}),
                                 gradgradcheck([](const Vs& x) { return gan::generator_loss_nonsaturating(x[0]); }, {af})})
        CHECK_MESSAGE(r.ok, r.message);
    CHECK_THROWS_WITH_AS(gan::discriminator_loss(V(ar), V(Tensor<double>::zeros({0}))), doctest::Contains("non-empty"), Error);
}

TEST_CASE("Wasserstein and hinge losses: values and derivatives") {
    const Tensor<double> dr = Tensor<double>::from({4}, {1.5, -0.5, 0.25, 3.0});
    const Tensor<double> df = Tensor<double>::from({3}, {-2.0, 0.5, -0.75});
    CHECK(close(gan::wasserstein_critic_loss(V(dr), V(df)).item(), (-2.0 + 0.5 - 0.75) / 3 - (1.5 - 0.5 + 0.25 + 3.0) / 4));
    CHECK(close(gan::wasserstein_generator_loss(V(df)).item(), (2.0 - 0.5 + 0.75) / 3));
    // relu(1 - d_real): 0, 1.5, 0.75, 0; relu(1 + d_fake): 0, 1.5, 0.25.
    CHECK(close(gan::hinge_critic_loss(V(dr), V(df)).item(), 2.25 / 4 + 1.75 / 3));
    CHECK(close(gan::hinge_generator_loss(V(df)).item(), (2.0 - 0.5 + 0.75) / 3));
    // Gradients away from the hinge kinks (d_real = 1, d_fake = -1).
    for (const CheckResult& r : {gradcheck([](const Vs& x) { return gan::wasserstein_critic_loss(x[0], x[1]); }, {dr, df}),
                                 gradcheck([](const Vs& x) { return gan::wasserstein_generator_loss(x[0]); }, {df}),
                                 gradcheck([](const Vs& x) { return gan::hinge_critic_loss(x[0], x[1]); }, {dr, df}),
                                 gradgradcheck([](const Vs& x) { return gan::hinge_critic_loss(x[0], x[1]); }, {dr, df}),
                                 gradcheck([](const Vs& x) { return gan::hinge_generator_loss(x[0]); }, {df})})
        CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("clip_weights: every parameter clamped to [-c, c] in place, nothing recorded") {
    Generator gen(9);
    nn::Sequential<float> D;
    D.add<nn::Linear>(3, 5, gen);
    D.add<nn::Linear>(5, 1, gen);
    const auto params = D.parameters();
    std::vector<std::vector<float>> before;
    for (const auto& p : params) {
        nn::init::normal_(p.value(), gen, 0.0, 0.1);
        before.push_back(p.value().to_vector());
    }
    const float* storage = params[0].value().data();
    const double c = 0.05;
    gan::clip_weights(D, c);
    int clipped = 0, kept = 0;
    for (std::size_t i = 0; i < params.size(); ++i) {
        CHECK(params[i].is_leaf());
        for (Index k = 0; k < params[i].numel(); ++k) {
            const float b = before[i][static_cast<std::size_t>(k)], a = params[i].value().flat(k);
            if (std::fabs(b) <= static_cast<float>(c)) {
                CHECK(a == b);
                ++kept;
            } else {
                CHECK(a == std::copysign(static_cast<float>(c), b));
                ++clipped;
            }
        }
    }
    CHECK(params[0].value().data() == storage);  // in place: the optimiser's handles stay valid
    CHECK(clipped > 0);
    CHECK(kept > 0);
    // A parameter list works too; NaN stays NaN (as torch.clamp_).
    Var<double> w(Tensor<double>::from({3}, {2.0, -3.0, std::nan("")}), true);
    gan::clip_weights(std::vector<Var<double>>{w}, 1.0);
    CHECK(w.value().flat(0) == 1.0);
    CHECK(w.value().flat(1) == -1.0);
    CHECK(std::isnan(w.value().flat(2)));
    CHECK_THROWS_WITH_AS(gan::clip_weights(D, 0.0), doctest::Contains("positive"), Error);
}

TEST_CASE("losses, bounds and estimators take elementwise expressions over Vars directly") {
    Generator gen(3);
    const V a(normal<double>({6}, gen), true), b(normal<double>({6}, gen), true);
    const V m(normal<double>({6, 2}, gen), true), lv(normal<double>({6, 2}, gen), true);
    // Each call with an expression equals the call with the expression turned into a Var first.
    auto same = [](const V& x, const V& y) { return x.value().flat(0) == doctest::Approx(y.value().flat(0)).epsilon(1e-15); };
    CHECK(same(gan::wasserstein_critic_loss(a * 2.0, b), gan::wasserstein_critic_loss(V(a * 2.0), b)));
    CHECK(same(gan::discriminator_loss(a, b + 1.0), gan::discriminator_loss(a, V(b + 1.0))));
    CHECK(same(gan::generator_loss_nonsaturating(-a), gan::generator_loss_nonsaturating(V(-a))));
    CHECK(same(fdiv::critic_loss<fdiv::KL>(a * 0.5, b), fdiv::critic_loss<fdiv::KL>(V(a * 0.5), b)));
    CHECK(same(energy::contrastive_loss(a - b, b), energy::contrastive_loss(V(a - b), b)));
    CHECK(same(energy::margin_hinge(square(a), 1.0), energy::margin_hinge(V(square(a)), 1.0)));
    CHECK(same(info::jsd(a * 1.5, b), info::jsd(V(a * 1.5), b)));
    CHECK(same(info::meg_generator_loss(a + b, mean(b), 2.0), info::meg_generator_loss(V(a + b), mean(b), 2.0)));
    CHECK(same(mean(info::kl_normal_std(m * 0.1, lv * 0.1)), mean(info::kl_normal_std(V(m * 0.1), V(lv * 0.1)))));
    // The gradient flows through the fused node as through the Var.
    const V g = grad(gan::wasserstein_critic_loss(a * 2.0, b), {a})[0];
    CHECK(g.value().flat(0) == doctest::Approx(-2.0 / 6));
}
