// Layers (include/ember/nn/).
//
// Every layer is checked, in double, for
//  - its forward value against a direct computation of its definition;
//  - first-order gradients with respect to its input and every parameter, against central
//    finite differences of the layer itself (parameters are perturbed in place);
//  - second-order gradients as a gradient penalty uses them: s = Σ r₂·∂L/∂x (L = Σ r₁·y,
//    r₁ and r₂ fixed random tensors) is differentiated with respect to the input and every
//    parameter, against finite differences of s.
// Central differences with h = 1e-6 have truncation error O(h²·f''') ≈ 1e-12 and rounding
// error about ε·|f|/h ≈ 1e-10 for |f| ~ 1, so atol 1e-6 with rtol 1e-5 leaves a margin of
// ten or more without hiding a wrong derivative (those are off by O(1)).
#include <doctest/doctest.h>

#include <Eigen/SVD>
#include <cmath>
#include <ember/ember.hpp>
#include <memory>
#include <string>
#include <vector>

using namespace ember;

namespace {

using V = Var<double>;

// A fixed random weighting of a layer's output, so that every output element matters.
Tensor<double> weights_like(const Shape& s, std::uint64_t seed) {
    Generator g(seed);
    return normal<double>(s, g);
}

double scalar_loss(nn::Module<double>& m, const V& x, const Tensor<double>& r) {
    NoGrad no_grad;
    return sum(V(m(x) * r)).item();
}

// Penalty-style scalar: Σ r₂ · ∂(Σ r₁·y)/∂x, differentiable in the parameters.
V penalty(nn::Module<double>& m, const V& x, const Tensor<double>& r1, const Tensor<double>& r2) {
    const V y = m(x);
    const V gx = grad(sum(V(y * r1)), {x}, {.create_graph = true})[0];
    return sum(V(gx * r2));
}

struct Tolerance {
    double atol = 1e-6, rtol = 1e-5;
};

// Compares analytic gradients (of `f` with respect to `x` and the parameters, computed by
// `analytic`) with central differences of `f`, perturbing each tensor in place.
void check_against_differences(const std::string& what, const std::vector<std::pair<std::string, Tensor<double>>>& wrt,
                               const std::vector<Tensor<double>>& analytic, const std::function<double()>& f,
                               Tolerance tol = {}) {
    const double h = 1e-6;
    for (std::size_t i = 0; i < wrt.size(); ++i) {
        const Tensor<double>& t = wrt[i].second;
        const Tensor<double> a = analytic[i].defined() ? analytic[i].contiguous() : Tensor<double>::zeros(t.shape());
        for (Index k = 0; k < t.numel(); ++k) {
            const double saved = t.data()[k];
            t.data()[k] = saved + h;
            const double fp = f();
            t.data()[k] = saved - h;
            const double fm = f();
            t.data()[k] = saved;
            const double numeric = (fp - fm) / (2 * h);
            const double err = std::abs(a.data()[k] - numeric);
            if (err > tol.atol + tol.rtol * std::abs(numeric)) {
                FAIL_CHECK(what << ": d/d " << wrt[i].first << "[" << k << "]: analytic " << a.data()[k] << ", numeric "
                                << numeric);
                return;
            }
        }
    }
}

// First- and second-order checks of a layer on input x (see the file comment).
void check_layer(const std::string& what, nn::Module<double>& m, const Tensor<double>& x_value, bool second_order = true,
                 Tolerance tol = {}) {
    INFO(what);
    V x(x_value.clone(), true);
    const Tensor<double> r1 = weights_like(m(x).shape(), 11);
    const Tensor<double> r2 = weights_like(x.shape(), 12);

    std::vector<std::pair<std::string, Tensor<double>>> wrt{{"x", x.value()}};
    std::vector<V> vars{x};
    for (auto& [name, p] : m.named_parameters()) {
        wrt.emplace_back(name, p.value());
        vars.push_back(p);
    }
    auto values = [](const std::vector<V>& gs) {
        std::vector<Tensor<double>> out;
        for (const V& g : gs) out.push_back(g.value());
        return out;
    };

    // First order.
    const V loss = sum(V(m(x) * r1));
    check_against_differences(what + " (first order)", wrt, values(grad(loss, vars)),
                              [&] { return scalar_loss(m, x, r1); }, tol);
    if (!second_order) return;
    // Second order through the gradient with respect to the input.
    const V s = penalty(m, x, r1, r2);
    if (!s.requires_grad()) return;  // the layer is linear in x with no parameters: nothing to check
    check_against_differences(what + " (second order)", wrt, values(grad(s, vars)),
                              [&] { return penalty(m, x, r1, r2).item(); }, tol);
}

Tensor<double> random(const Shape& s, std::uint64_t seed, double lo = -1, double hi = 1) {
    Generator g(seed);
    return uniform<double>(s, g, lo, hi);
}

}  // namespace

TEST_CASE("Linear: y = x Wᵀ + b with PyTorch's layout, names and default initialisation") {
    Generator gen(1);
    nn::Linear<double> lin(3, 2, gen);
    const auto params = lin.named_parameters();
    REQUIRE(params.size() == 2);
    CHECK(params[0].first == "weight");
    CHECK(params[0].second.shape() == Shape{2, 3});
    CHECK(params[1].first == "bias");
    CHECK(params[1].second.shape() == Shape{2});
    // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for both.
    for (const auto& [name, p] : params)
        for (Index i = 0; i < p.numel(); ++i) CHECK(std::abs(p.value().data()[i]) <= 1 / std::sqrt(3.0));

    const Tensor<double> x = random(Shape{4, 3}, 2);
    const Tensor<double> y = lin(V(x)).value();
    const Tensor<double>& W = lin.weight().value();
    const Tensor<double>& b = lin.bias().value();
    for (Index n = 0; n < 4; ++n)
        for (Index o = 0; o < 2; ++o) {
            double ref = b.data()[o];
            for (Index i = 0; i < 3; ++i) ref += x.data()[n * 3 + i] * W.data()[o * 3 + i];
            CHECK(y.data()[n * 2 + o] == doctest::Approx(ref).epsilon(1e-14));
        }
    // [..., in] inputs keep their leading axes.
    CHECK(lin(V(random(Shape{2, 5, 3}, 3))).shape() == Shape{2, 5, 2});
    CHECK_THROWS_WITH_AS(lin(V(random(Shape{4, 5}, 3))), doctest::Contains("Linear"), Error);
    CHECK_THROWS_AS(nn::Linear<double>(0, 2, gen), Error);
    nn::Linear<double> no_bias(3, 2, gen, false);
    CHECK(no_bias.named_parameters().size() == 1);
}

TEST_CASE("every layer: first- and second-order gradients against finite differences") {
    Generator gen(5);
    SUBCASE("Linear") {
        nn::Linear<double> m(4, 3, gen);
        check_layer("Linear", m, random(Shape{5, 4}, 1));
    }
    SUBCASE("Linear without bias, 3-D input") {
        nn::Linear<double> m(4, 3, gen, false);
        check_layer("Linear", m, random(Shape{2, 3, 4}, 1));
    }
    // The convolution layers on every backend of ops/conv/backend.hpp.
    const ConvBackend backends[] = {ConvBackend::automatic, ConvBackend::im2col, ConvBackend::direct,
                                    ConvBackend::samples_innermost};
    SUBCASE("Conv2d") {
        for (ConvBackend backend : backends) {
            const ForceConvBackend force(backend);
            CAPTURE(static_cast<int>(backend));
            nn::Conv2d<double> m(2, 3, 3, gen, {.stride = 2, .padding = 1});
            check_layer("Conv2d", m, random(Shape{2, 2, 5, 5}, 2));
            nn::Conv2d<double> activated(2, 3, 3, gen, {.padding = 1, .activation = ConvActivation::leaky_relu(0.2)});
            check_layer("Conv2d -> LeakyReLU", activated, random(Shape{2, 2, 5, 5}, 2));
        }
    }
    SUBCASE("UpsampleConv2d") {
        for (ConvBackend backend : backends) {
            const ForceConvBackend force(backend);
            CAPTURE(static_cast<int>(backend));
            nn::UpsampleConv2d<double> m(2, 2, 3, 3, gen);
            check_layer("UpsampleConv2d", m, random(Shape{2, 2, 3, 2}, 3));
        }
    }
    SUBCASE("ConvTranspose2d") {
        for (ConvBackend backend : backends) {
            const ForceConvBackend force(backend);
            CAPTURE(static_cast<int>(backend));
            nn::ConvTranspose2d<double> m(3, 2, 4, gen, {.stride = 2, .padding = 1});
            check_layer("ConvTranspose2d", m, random(Shape{2, 3, 3, 3}, 3));
        }
    }
    SUBCASE("BatchNorm1d, training") {
        nn::BatchNorm1d<double> m(3);
        check_layer("BatchNorm1d", m, random(Shape{6, 3}, 4));
    }
    SUBCASE("BatchNorm1d on [N,C,L], training") {
        nn::BatchNorm1d<double> m(2);
        check_layer("BatchNorm1d", m, random(Shape{3, 2, 4}, 4));
    }
    SUBCASE("BatchNorm2d, training") {
        nn::BatchNorm2d<double> m(2);
        // Perturb the affine parameters away from (1, 0) so every term is exercised.
        nn::init::uniform_(m.weight().value(), gen, 0.5, 1.5);
        nn::init::uniform_(m.bias().value(), gen, -0.5, 0.5);
        check_layer("BatchNorm2d", m, random(Shape{3, 2, 3, 3}, 5));
    }
    SUBCASE("BatchNorm2d, evaluation") {
        nn::BatchNorm2d<double> m(2);
        m(V(random(Shape{4, 2, 3, 3}, 6)));  // some running statistics
        m.eval();
        check_layer("BatchNorm2d eval", m, random(Shape{3, 2, 3, 3}, 5));
    }
    SUBCASE("LayerNorm") {
        nn::LayerNorm<double> m({2, 3});
        nn::init::uniform_(m.named_parameters()[0].second.value(), gen, 0.5, 1.5);
        check_layer("LayerNorm", m, random(Shape{4, 2, 3}, 7));
    }
    SUBCASE("activations") {
        nn::LeakyReLU<double> lrelu(0.2);
        check_layer("LeakyReLU", lrelu, random(Shape{3, 4}, 8));
        nn::ReLU<double> relu;
        check_layer("ReLU", relu, random(Shape{3, 4}, 8));
        nn::Tanh<double> th;
        check_layer("Tanh", th, random(Shape{3, 4}, 8));
        nn::Sigmoid<double> sg;
        check_layer("Sigmoid", sg, random(Shape{3, 4}, 8));
        nn::Softplus<double> sp;
        check_layer("Softplus", sp, random(Shape{3, 4}, 8));
        nn::SiLU<double> si;
        check_layer("SiLU", si, random(Shape{3, 4}, 8));
        nn::ELU<double> el(0.7);
        check_layer("ELU", el, random(Shape{3, 4}, 8));
    }
    SUBCASE("shape and pooling layers") {
        nn::Flatten<double> fl;
        check_layer("Flatten", fl, random(Shape{2, 3, 2, 2}, 9));
        nn::Reshape<double> rs({2, 6});
        check_layer("Reshape", rs, random(Shape{2, 3, 4}, 9));
        nn::Upsample<double> up(2);
        check_layer("Upsample", up, random(Shape{2, 2, 2, 3}, 9));
        nn::AvgPool2d<double> ap(2);
        check_layer("AvgPool2d", ap, random(Shape{2, 2, 4, 4}, 9));
        nn::MaxPool2d<double> mp(2);
        check_layer("MaxPool2d", mp, random(Shape{2, 2, 4, 4}, 9));
    }
    SUBCASE("Dropout (training, a fixed mask per evaluation)") {
        // The layer draws a new mask per call; finite differences need the same mask in
        // every evaluation, so each evaluation uses a fresh layer with the same seed.
        struct FixedMask : nn::Module<double> {
            V forward(const V& x) override { return nn::Dropout<double>(0.3, 42)(x); }
            std::string describe() const override { return "FixedMask"; }
        } m;
        check_layer("Dropout", m, random(Shape{4, 5}, 10));
    }
    SUBCASE("a whole critic: Sequential of Linear, LeakyReLU, LayerNorm, Linear") {
        nn::Sequential<double> m;
        m.add<nn::Linear>(4, 6, gen);
        m.add<nn::LeakyReLU>(0.2);
        m.add<nn::LayerNorm>(std::vector<Index>{6});
        m.add<nn::Linear>(6, 1, gen);
        check_layer("critic", m, random(Shape{3, 4}, 11));
    }
    SUBCASE("spectral normalisation of Linear and Conv2d (evaluation: u, v fixed)") {
        auto sn = nn::spectral_norm<double>(std::make_shared<nn::Linear<double>>(4, 3, gen), gen);
        sn->eval();
        check_layer("SpectralNorm(Linear)", *sn, random(Shape{5, 4}, 12));
        auto snc = nn::spectral_norm<double>(std::make_shared<nn::Conv2d<double>>(2, 3, 3, gen, nn::Conv2dOptions{.padding = 1}), gen);
        snc->eval();
        check_layer("SpectralNorm(Conv2d)", *snc, random(Shape{2, 2, 4, 4}, 13));
    }
}

TEST_CASE("Conv2d and ConvTranspose2d: shapes, PyTorch's weight layouts and default bounds") {
    Generator gen(3);
    nn::Conv2d<float> c(3, 8, 5, gen, {.stride = 2, .padding = 2});
    CHECK(c.weight().shape() == Shape{8, 3, 5, 5});
    CHECK(c(Var<float>(Tensor<float>::zeros(Shape{2, 3, 28, 28}))).shape() == Shape{2, 8, 14, 14});
    const float bound = 1 / std::sqrt(3.0f * 25);
    for (Index i = 0; i < c.weight().numel(); ++i) CHECK(std::abs(c.weight().value().data()[i]) <= bound);
    nn::ConvTranspose2d<float> t(8, 3, 4, gen, {.stride = 2, .padding = 1});
    CHECK(t.weight().shape() == Shape{8, 3, 4, 4});
    CHECK(t(Var<float>(Tensor<float>::zeros(Shape{2, 8, 7, 7}))).shape() == Shape{2, 3, 14, 14});
    // PyTorch computes ConvTranspose2d's fan_in from weight.size(1)·k·k = 3·16.
    const float tbound = 1 / std::sqrt(3.0f * 16);
    float largest = 0;
    for (Index i = 0; i < t.weight().numel(); ++i) largest = std::max(largest, std::abs(t.weight().value().data()[i]));
    CHECK(largest <= tbound);
    CHECK(largest > 0.9f * tbound);  // 384 draws: the largest is close to the bound
    CHECK_THROWS_WITH_AS(c(Var<float>(Tensor<float>::zeros(Shape{2, 4, 28, 28}))), doctest::Contains("channels"), Error);
}

TEST_CASE("Conv2d with a LeakyReLU activation gives the results of Conv2d then LeakyReLU, to the bit") {
    // SGLD's conv energy (bench_models.cpp) in float on one thread, where the samples form
    // one group and the activation is applied inside the samples-innermost kernel, and on
    // two: energies, input gradients and parameter gradients as with the separate layers.
    const int threads = num_threads();
    for (int t : {1, 2}) {
        set_num_threads(t);
        nn::Sequential<float> fused, separate;
        for (bool fuse : {true, false}) {
            Generator gen(4);  // the same parameters in both networks
            nn::Sequential<float>& net = fuse ? fused : separate;
            const nn::Conv2dOptions down{.stride = 2, .padding = 1, .activation = ConvActivation::leaky_relu(0.2)};
            const nn::Conv2dOptions down_alone{.stride = 2, .padding = 1};
            net.add<nn::Conv2d>(1, 8, 3, gen, fuse ? down : down_alone);
            if (!fuse) net.add<nn::LeakyReLU>(0.2);
            net.add<nn::Conv2d>(8, 16, 3, gen, fuse ? down : down_alone);
            if (!fuse) net.add<nn::LeakyReLU>(0.2);
            net.add<nn::Flatten>();
            net.add<nn::Linear>(16 * 4 * 4, 1, gen);
        }
        CHECK(fused[0].describe() == "Conv2d(1, 8, kernel=3, stride=2, padding=1) -> LeakyReLU(0.2)");
        Generator data_gen(5);
        const Tensor<float> x = uniform<float>(Shape{16, 1, 14, 14}, data_gen);
        std::vector<Tensor<float>> results;
        for (nn::Sequential<float>* net : {&fused, &separate}) {
            const Var<float> leaf(x, true);
            const Var<float> u = (*net)(leaf);
            results.push_back(u.value().contiguous());
            results.push_back(grad(sum(u), {leaf})[0].value().contiguous());
            net->zero_grad();
            sum((*net)(leaf)).backward();
            for (const Var<float>& p : net->parameters()) results.push_back(p.grad().clone());
        }
        const std::size_t half = results.size() / 2;
        for (std::size_t i = 0; i < half; ++i) CHECK(results[i].to_vector() == results[half + i].to_vector());
    }
    set_num_threads(threads);
}

TEST_CASE("UpsampleConv2d is Upsample then a same-padded Conv2d with the same parameters") {
    Generator a(4), b(4);
    nn::UpsampleConv2d<double> fused(2, 3, 5, 3, a);
    nn::Sequential<double> plain;
    plain.add<nn::Upsample>(2);
    plain.add<nn::Conv2d>(3, 5, 3, b, nn::Conv2dOptions{.padding = 1});
    // Same shapes, same initialisation from the same generator state.
    CHECK(fused.weight().value().to_vector() == plain.parameters()[0].value().to_vector());
    const V x(random(Shape{2, 3, 7, 7}, 5));
    const Tensor<double> y = fused(x).value(), ref = plain(x).value();
    REQUIRE(y.shape() == Shape{2, 5, 14, 14});
    double worst = 0;
    for (Index i = 0; i < y.numel(); ++i) worst = std::max(worst, std::abs(y.data()[i] - ref.data()[i]));
    CHECK(worst < 1e-12);
    CHECK_THROWS_WITH_AS(nn::UpsampleConv2d<double>(2, 3, 5, 4, a), doctest::Contains("odd kernel"), Error);
}

TEST_CASE("BatchNorm: batch statistics, running statistics with PyTorch's momentum, evaluation mode") {
    nn::BatchNorm1d<double> bn(2, {.momentum = 0.25});
    // Channel 0: {1, 2, 3, 6} mean 3, biased var 3.5, unbiased 14/3; channel 1: {0, 0, 4, 4}
    // mean 2, biased var 4, unbiased 16/3.
    const Tensor<double> x = Tensor<double>::from(Shape{4, 2}, {1, 0, 2, 0, 3, 4, 6, 4});
    const Tensor<double> y = bn(V(x)).value();
    CHECK(y.data()[0] == doctest::Approx((1 - 3) / std::sqrt(3.5 + 1e-5)).epsilon(1e-12));
    CHECK(y.data()[7] == doctest::Approx((4 - 2) / std::sqrt(4 + 1e-5)).epsilon(1e-12));
    CHECK(bn.running_mean().data()[0] == doctest::Approx(0.75 * 0 + 0.25 * 3));
    CHECK(bn.running_mean().data()[1] == doctest::Approx(0.25 * 2));
    CHECK(bn.running_var().data()[0] == doctest::Approx(0.75 * 1 + 0.25 * 14.0 / 3));
    CHECK(bn.running_var().data()[1] == doctest::Approx(0.75 * 1 + 0.25 * 16.0 / 3));
    // Evaluation uses the running statistics and leaves them alone.
    bn.eval();
    const Tensor<double> ye = bn(V(x)).value();
    CHECK(ye.data()[0] == doctest::Approx((1 - 0.75) / std::sqrt(0.75 + 0.25 * 14.0 / 3 + 1e-5)).epsilon(1e-12));
    CHECK(bn.running_mean().data()[0] == doctest::Approx(0.75));
    // Names as PyTorch's (num_batches_tracked, an int64 counter, is not kept).
    const auto sd = bn.state_dict();
    REQUIRE(sd.size() == 4);
    CHECK(sd[0].first == "weight");
    CHECK(sd[2].first == "running_mean");
    CHECK(sd[3].first == "running_var");
    bn.train();
    // infer: evaluation mode (the running statistics, left alone), and the training mode back,
    // even after an error.
    const Tensor<double> yi = bn.infer(x);
    CHECK(yi.data()[0] == ye.data()[0]);
    CHECK(bn.is_training());
    CHECK(bn.running_mean().data()[0] == doctest::Approx(0.75));
    CHECK_THROWS_WITH_AS(bn.infer(Tensor<double>::zeros(Shape{4, 3})), doctest::Contains("BatchNorm1d"), Error);
    CHECK(bn.is_training());
    CHECK_THROWS_WITH_AS(bn(V(Tensor<double>::zeros(Shape{1, 2}))), doctest::Contains("more than one value"), Error);
    CHECK_THROWS_WITH_AS(bn(V(Tensor<double>::zeros(Shape{4, 3}))), doctest::Contains("BatchNorm1d"), Error);
}

TEST_CASE("LayerNorm normalises each sample over its trailing axes") {
    nn::LayerNorm<double> ln({4});
    const Tensor<double> x = Tensor<double>::from(Shape{2, 4}, {1, 2, 3, 4, -2, 0, 0, 2});
    const Tensor<double> y = ln(V(x)).value();
    CHECK(y.data()[0] == doctest::Approx(-1.5 / std::sqrt(1.25 + 1e-5)).epsilon(1e-12));
    CHECK(y.data()[4] == doctest::Approx(-2 / std::sqrt(2 + 1e-5)).epsilon(1e-12));
    CHECK_THROWS_AS(ln(V(Tensor<double>::zeros(Shape{2, 3}))), Error);
}

TEST_CASE("Dropout: the kept fraction and scaling in training, the identity in evaluation") {
    nn::Dropout<double> d(0.3, 7);
    const Index n = 100000;
    const Tensor<double> y = d(V(Tensor<double>::ones(Shape{n}))).value();
    Index kept = 0;
    for (Index i = 0; i < n; ++i) {
        const double v = y.data()[i];
        CHECK((v == 0 || std::abs(v - 1 / 0.7) < 1e-12));
        kept += v != 0;
    }
    // Binomial(n, 0.7): standard deviation sqrt(n·0.21) ≈ 145; allow 5 of them.
    CHECK(std::abs(static_cast<double>(kept) - 0.7 * n) < 5 * std::sqrt(n * 0.21));
    d.eval();
    const Tensor<double> z = d(V(Tensor<double>::ones(Shape{10}))).value();
    for (Index i = 0; i < 10; ++i) CHECK(z.data()[i] == 1);
    CHECK_THROWS_AS(nn::Dropout<double>(1.5), Error);
}

TEST_CASE("initialisers: bounds and moments of Xavier, Kaiming and normal(0, 0.02)") {
    Generator gen(9);
    const Tensor<double> w = Tensor<double>::empty(Shape{256, 512});
    const double n = static_cast<double>(w.numel());
    auto moments = [&] {
        double s = 0, s2 = 0, largest = 0;
        for (Index i = 0; i < w.numel(); ++i) {
            s += w.data()[i];
            s2 += w.data()[i] * w.data()[i];
            largest = std::max(largest, std::abs(w.data()[i]));
        }
        return std::array<double, 3>{s / n, std::sqrt(s2 / n - (s / n) * (s / n)), largest};
    };
    // A sample standard deviation of n draws has relative standard error about 1/sqrt(2n)
    // (0.0014 here, a little more for uniforms); allow 1%, i.e. 7 of them.
    SUBCASE("xavier_uniform_") {
        nn::init::xavier_uniform_(w, gen);
        const double a = std::sqrt(6.0 / (256 + 512));
        const auto m = moments();
        CHECK(m[2] <= a);
        CHECK(m[1] == doctest::Approx(a / std::sqrt(3.0)).epsilon(0.01));
    }
    SUBCASE("xavier_normal_ with tanh gain") {
        nn::init::xavier_normal_(w, gen, nn::init::gain("tanh"));
        CHECK(moments()[1] == doctest::Approx(5.0 / 3 * std::sqrt(2.0 / 768)).epsilon(0.01));
    }
    SUBCASE("kaiming_normal_ for ReLU, fan_in and fan_out") {
        nn::init::kaiming_normal_(w, gen, 0, nn::init::FanMode::fan_in, "relu");
        CHECK(moments()[1] == doctest::Approx(std::sqrt(2.0 / 512)).epsilon(0.01));
        nn::init::kaiming_normal_(w, gen, 0, nn::init::FanMode::fan_out, "relu");
        CHECK(moments()[1] == doctest::Approx(std::sqrt(2.0 / 256)).epsilon(0.01));
    }
    SUBCASE("kaiming_uniform_ for leaky ReLU 0.2") {
        nn::init::kaiming_uniform_(w, gen, 0.2);
        const double bound = std::sqrt(2.0 / 1.04) * std::sqrt(3.0 / 512);
        const auto m = moments();
        CHECK(m[2] <= bound);
        CHECK(m[1] == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.01));
    }
    SUBCASE("normal_(0, 0.02), DCGAN's") {
        nn::init::normal_(w, gen, 0.0, 0.02);
        const auto m = moments();
        CHECK(std::abs(m[0]) < 4 * 0.02 / std::sqrt(n));
        CHECK(m[1] == doctest::Approx(0.02).epsilon(0.01));
    }
    CHECK_THROWS_AS(nn::init::kaiming_normal_(Tensor<double>::empty(Shape{5}), gen), Error);
    CHECK_THROWS_WITH_AS(nn::init::gain("swish"), doctest::Contains("unknown nonlinearity"), Error);
}

namespace {
// A user-defined model as a researcher writes one: two registered sub-networks.
struct Gan : nn::Module<float> {
    std::shared_ptr<nn::Sequential<float>> gen, disc;
    explicit Gan(Generator& g) {
        gen = register_module("gen", std::make_shared<nn::Sequential<float>>());
        gen->add<nn::Linear>(2, 8, g);
        gen->add<nn::BatchNorm1d>(8);
        gen->add<nn::ReLU>();
        gen->add<nn::Linear>(8, 2, g);
        disc = register_module("disc", std::make_shared<nn::Sequential<float>>());
        disc->add<nn::Linear>(2, 8, g);
        disc->add<nn::LeakyReLU>(0.2);
        disc->add<nn::Linear>(8, 1, g);
    }
    Var<float> forward(const Var<float>& z) override { return (*disc)((*gen)(z)); }
    std::string describe() const override { return "Gan"; }
};
}  // namespace

TEST_CASE("named parameters and buffers, state dicts, train/eval propagation") {
    Generator g(1);
    Gan model(g);
    std::vector<std::string> names;
    for (const auto& [name, t] : model.state_dict()) names.push_back(name);
    const std::vector<std::string> expected{"gen.0.weight",  "gen.0.bias",  "gen.1.weight",       "gen.1.bias",
                                            "gen.3.weight",  "gen.3.bias",  "disc.0.weight",      "disc.0.bias",
                                            "disc.2.weight", "disc.2.bias", "gen.1.running_mean", "gen.1.running_var"};
    CHECK(names == expected);
    CHECK(model.parameter_count() == (2 * 8 + 8) + 16 + (8 * 2 + 2) + (2 * 8 + 8) + (8 + 1));
    CHECK(model.summary().find("(disc): Sequential") != std::string::npos);

    model.eval();
    CHECK(!model.gen->is_training());
    CHECK(!(*model.gen)[1].is_training());
    model.train();
    CHECK((*model.gen)[1].is_training());

    // A round trip through a state dict restores every value in place.
    std::map<std::string, Tensor<float>> saved;
    for (const auto& [name, t] : model.state_dict()) saved[name] = t.clone();
    Generator g2(2);
    Gan other(g2);
    const Var<float> w_handle = other.disc->named_parameters()[0].second;
    other.load_state_dict(saved);
    for (const auto& [name, t] : other.state_dict())
        for (Index i = 0; i < t.numel(); ++i) REQUIRE(t.data()[i] == saved[name].data()[i]);
    CHECK(w_handle.value().data()[0] == saved["disc.0.weight"].data()[0]);  // same storage

    // Only one sub-network, by prefix.
    nn::Sequential<float>& disc = *other.disc;
    disc.load_state_dict(saved, "disc.", false);

    // Clear errors for missing, unexpected and mis-shaped tensors; nothing is written.
    auto missing = saved;
    missing.erase("gen.1.running_var");
    CHECK_THROWS_WITH_AS(other.load_state_dict(missing), doctest::Contains("lacks 'gen.1.running_var'"), Error);
    auto extra = saved;
    extra["gen.9.weight"] = Tensor<float>::zeros(Shape{1});
    CHECK_THROWS_WITH_AS(other.load_state_dict(extra), doctest::Contains("has no 'gen.9.weight'"), Error);
    auto wrong = saved;
    wrong["disc.2.bias"] = Tensor<float>::zeros(Shape{2});
    wrong["disc.0.bias"] = Tensor<float>::full(Shape{8}, 5.0f);
    CHECK_THROWS_WITH_AS(other.load_state_dict(wrong), doctest::Contains("'disc.2.bias' has shape [2]"), Error);
    CHECK(other.disc->named_parameters()[1].second.value().data()[0] != 5.0f);

    // A name can be registered once.
    struct Twice : nn::Module<float> {
        Twice() {
            register_parameter("w", Tensor<float>::zeros(Shape{1}));
            register_buffer("w", Tensor<float>::zeros(Shape{1}));
        }
        Var<float> forward(const Var<float>& x) override { return x; }
        std::string describe() const override { return "Twice"; }
    };
    CHECK_THROWS_WITH_AS(Twice(), doctest::Contains("already registered"), Error);
}

TEST_CASE("a module trains: an MLP regression with Adam reaches a small loss") {
    Generator g(4);
    nn::Sequential<double> net;
    net.add<nn::Linear>(1, 16, g);
    net.add<nn::Tanh>();
    net.add<nn::Linear>(16, 1, g);
    const Tensor<double> x = uniform<double>(Shape{64, 1}, g, -2, 2);
    Tensor<double> y = Tensor<double>::empty(Shape{64, 1});
    for (Index i = 0; i < 64; ++i) y.data()[i] = std::sin(x.data()[i]);
    Adam<double> opt(net.parameters(), {.lr = 0.02});
    double loss = 0;
    for (int step = 0; step < 500; ++step) {
        opt.zero_grad();
        const V l = mean(V(square(net(V(x)) - y)));
        backward(l);
        opt.step();
        loss = l.item();
    }
    // sin on [-2, 2] is smooth; 16 tanh units fit it to well under 1% of its variance (0.6).
    CHECK(loss < 1e-3);
}

TEST_CASE("spectral normalisation: σ matches the largest singular value; PyTorch's names") {
    Generator g(8);
    auto lin = std::make_shared<nn::Linear<double>>(6, 4, g);
    auto sn = nn::spectral_norm<double>(lin, g, {.n_power_iterations = 1});
    const auto sd = sn->state_dict();
    REQUIRE(sd.size() == 4);
    CHECK(sd[0].first == "weight_orig");
    CHECK(sd[1].first == "bias");
    CHECK(sd[2].first == "weight_u");
    CHECK(sd[3].first == "weight_v");

    auto largest_singular_value = [](const Tensor<double>& w, Index rows) {
        Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> m(w.data(), rows,
                                                                                                    w.numel() / rows);
        return Eigen::JacobiSVD<Eigen::MatrixXd>(m).singularValues()(0);
    };
    const double s1 = largest_singular_value(lin->weight().value(), 4);
    // Power iteration converges at the rate (σ₂/σ₁)² per step; after 15 + a few steps on a
    // random 4×6 matrix the estimate agrees to many digits.
    for (int i = 0; i < 5; ++i) (*sn)(V(Tensor<double>::zeros(Shape{1, 6})));
    CHECK(sn->sigma() == doctest::Approx(s1).epsilon(1e-6));
    const Tensor<double> w_sn = sn->normalized_weight().value().contiguous();
    CHECK(largest_singular_value(w_sn, 4) == doctest::Approx(1.0).epsilon(1e-6));

    // ConvTranspose2d: rows are output channels (axis 1 of its weight), as PyTorch's dim=1.
    auto ct = std::make_shared<nn::ConvTranspose2d<double>>(3, 2, 3, g);
    auto snt = nn::spectral_norm<double>(ct, g);
    for (int i = 0; i < 20; ++i) (*snt)(V(Tensor<double>::zeros(Shape{1, 3, 2, 2})));
    const Tensor<double> wt = transpose(Var<double>(ct->weight().value()), 0, 1).value().contiguous();
    CHECK(snt->sigma() == doctest::Approx(largest_singular_value(wt, 2)).epsilon(1e-6));
}
