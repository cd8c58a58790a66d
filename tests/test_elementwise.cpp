// Every elementwise op through the harness, over the broadcasting cases, plus fusion:
// one buffer per fused forward, one node per fused expression.
#include <cmath>
#include <functional>
#include <cstring>
#include <limits>
#include <string>

#include "harness.hpp"

using namespace ember;
using namespace ember::test;

namespace {

double sp(double x) { return std::max(x, 0.0) + std::log1p(std::exp(-std::fabs(x))); }
double sig(double x) { return 1 / (1 + std::exp(-x)); }

struct Unary {
    const char* name;
    double lo, hi;
    std::function<V(const V&)> op;
    std::function<double(double)> ref;
    bool second_order = true;
};

std::vector<Unary> unary_table() {
    return {
        {"neg", -2, 2, [](const V& x) { return V(-x); }, [](double x) { return -x; }},
        {"exp", -2, 2, [](const V& x) { return V(exp(x)); }, [](double x) { return std::exp(x); }},
        {"log", 0.2, 3, [](const V& x) { return V(log(x)); }, [](double x) { return std::log(x); }},
        {"log1p", -0.5, 3, [](const V& x) { return V(log1p(x)); }, [](double x) { return std::log1p(x); }},
        {"expm1", -2, 2, [](const V& x) { return V(expm1(x)); }, [](double x) { return std::expm1(x); }},
        {"sqrt", 0.2, 3, [](const V& x) { return V(sqrt(x)); }, [](double x) { return std::sqrt(x); }},
        {"rsqrt", 0.2, 3, [](const V& x) { return V(rsqrt(x)); }, [](double x) { return 1 / std::sqrt(x); }},
        {"square", -2, 2, [](const V& x) { return V(square(x)); }, [](double x) { return x * x; }},
        {"abs", -2, 2, [](const V& x) { return V(abs(x)); }, [](double x) { return std::fabs(x); }},
        {"pow 3", -2, 2, [](const V& x) { return V(pow(x, 3)); }, [](double x) { return x * x * x; }},
        {"pow 2.5", 0.2, 2, [](const V& x) { return V(pow(x, 2.5)); }, [](double x) { return std::pow(x, 2.5); }},
        {"tanh", -2, 2, [](const V& x) { return V(tanh(x)); }, [](double x) { return std::tanh(x); }},
        {"sigmoid", -6, 6, [](const V& x) { return V(sigmoid(x)); }, sig},
        {"softplus", -6, 6, [](const V& x) { return V(softplus(x)); }, sp},
        {"log_sigmoid", -6, 6, [](const V& x) { return V(log_sigmoid(x)); }, [](double x) { return -sp(-x); }},
        {"relu", -2, 2, [](const V& x) { return V(relu(x)); }, [](double x) { return std::max(x, 0.0); }},
        {"leaky_relu", -2, 2, [](const V& x) { return V(leaky_relu(x, 0.2)); },
         [](double x) { return x > 0 ? x : 0.2 * x; }},
        {"elu", -2, 2, [](const V& x) { return V(elu(x, 1.5)); },
         [](double x) { return x > 0 ? x : 1.5 * std::expm1(x); }},
        {"clamp", -2, 2, [](const V& x) { return V(clamp(x, -0.5, 1.0)); },
         [](double x) { return std::min(std::max(x, -0.5), 1.0); }},
        {"clamp_min", -2, 2, [](const V& x) { return V(clamp_min(x, -0.5)); }, [](double x) { return std::max(x, -0.5); }},
        {"clamp_max", -2, 2, [](const V& x) { return V(clamp_max(x, 1.0)); }, [](double x) { return std::min(x, 1.0); }},
    };
}

struct Binary {
    const char* name;
    double lo, hi;
    std::function<V(const V&, const V&)> op;
    std::function<double(double, double)> ref;
};

std::vector<Binary> binary_table() {
    return {
        {"add", -2, 2, [](const V& a, const V& b) { return V(a + b); }, [](double a, double b) { return a + b; }},
        {"sub", -2, 2, [](const V& a, const V& b) { return V(a - b); }, [](double a, double b) { return a - b; }},
        {"mul", -2, 2, [](const V& a, const V& b) { return V(a * b); }, [](double a, double b) { return a * b; }},
        {"div", 0.5, 2, [](const V& a, const V& b) { return V(a / b); }, [](double a, double b) { return a / b; }},
        {"pow", 0.5, 2, [](const V& a, const V& b) { return V(pow(a, b)); },
         [](double a, double b) { return std::pow(a, b); }},
        {"minimum", -2, 2, [](const V& a, const V& b) { return V(minimum(a, b)); },
         [](double a, double b) { return std::min(a, b); }},
        {"maximum", -2, 2, [](const V& a, const V& b) { return V(maximum(a, b)); },
         [](double a, double b) { return std::max(a, b); }},
        {"where(a>b)", -2, 2, [](const V& a, const V& b) { return V(where(a > b, a * b, b - a)); },
         [](double a, double b) { return a > b ? a * b : b - a; }},
    };
}

// Broadcasting cases: equal shapes, a row, a column against a row, a scalar, rank 3.
const std::vector<std::pair<Shape, Shape>> kBroadcastCases = {
    {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{3, 1}, {1, 4}}, {{3, 4}, {}}, {{2, 3, 4}, {3, 1}}};

}  // namespace

TEST_CASE("unary elementwise ops: value, gradient and gradient of gradient") {
    for (const auto& u : unary_table()) {
        for (Shape s : {Shape{3, 4}, Shape{}, Shape{2, 1, 5}}) {
            OpRow row{u.name, {s}, u.lo, u.hi, [op = u.op](const Vs& v) { return op(v[0]); },
                      elementwise([f = u.ref](const std::vector<double>& a) { return f(a[0]); }), u.second_order};
            check_op(row);
        }
    }
}

namespace {

// An op with its value and first and second derivatives in long double, the reference at
// its edge points: both tails, near 0, and as far as the op's value and derivatives stay normal
// numbers (the largest finite argument where that is the binding limit, exp's 709).
struct Tail {
    const char* name;
    std::function<Var<double>(const Var<double>&)> op;
    std::function<Var<float>(const Var<float>&)> op_float;
    std::function<long double(long double)> f, d1, d2;
    std::vector<double> points, float_points;
};

long double sigmoid_l(long double x) { return 1 / (1 + std::exp(-x)); }
long double dsigmoid_l(long double x) { return sigmoid_l(x) * sigmoid_l(-x); }
long double softplus_l(long double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// The saturating ops: double up to |x| = 100 (e^-200 for tanh), float up to 27 (sigmoid' =
// 1.9e-12 there).
const std::vector<double> kSaturating = {-100, -50, -27, -20, -1, -1e-8, 1e-8, 1, 20, 27, 50, 100};
const std::vector<double> kSaturatingFloat = {-27, -20, -5, -1, -1e-4, 1e-4, 1, 5, 20, 27};
// The same with 0, for the ops smooth there (elu's kink at 0 has its own test).
const std::vector<double> kSmooth = {-100, -50, -27, -20, -1, -1e-8, 0, 1e-8, 1, 20, 27, 50, 100};
const std::vector<double> kSmoothFloat = {-27, -20, -5, -1, -1e-4, 0, 1e-4, 1, 5, 20, 27};

#define EMBER_TAIL_OPS(expr)                                         \
    [](const Var<double>& x) { return Var<double>(expr); },         \
    [](const Var<float>& x) { return Var<float>(expr); }

std::vector<Tail> tail_table() {
    const long double alpha = 1.5L;
    return {
        {"tanh", EMBER_TAIL_OPS(tanh(x)), [](long double x) { return std::tanh(x); },
         [](long double x) { return 1 / (std::cosh(x) * std::cosh(x)); },
         [](long double x) { return -2 * std::tanh(x) / (std::cosh(x) * std::cosh(x)); }, kSmooth, kSmoothFloat},
        {"sigmoid", EMBER_TAIL_OPS(sigmoid(x)), sigmoid_l, dsigmoid_l,
         [](long double x) { return dsigmoid_l(x) * std::tanh(-x / 2); }, kSmooth, kSmoothFloat},
        {"softplus", EMBER_TAIL_OPS(softplus(x)), softplus_l, sigmoid_l, dsigmoid_l, kSmooth, kSmoothFloat},
        {"log_sigmoid", EMBER_TAIL_OPS(log_sigmoid(x)), [](long double x) { return -softplus_l(-x); },
         [](long double x) { return sigmoid_l(-x); }, [](long double x) { return -dsigmoid_l(x); }, kSmooth,
         kSmoothFloat},
        {"expm1", EMBER_TAIL_OPS(expm1(x)), [](long double x) { return std::expm1(x); },
         [](long double x) { return std::exp(x); }, [](long double x) { return std::exp(x); },
         {-700, -100, -20, -1, -1e-8, 0, 1e-8, 1, 20, 100, 709}, {-87, -20, -1, -1e-4, 0, 1e-4, 1, 20, 88}},
        {"elu", EMBER_TAIL_OPS(elu(x, 1.5)), [=](long double x) { return x > 0 ? x : alpha * std::expm1(x); },
         [=](long double x) { return x > 0 ? 1.0L : alpha * std::exp(x); },
         [=](long double x) { return x > 0 ? 0.0L : alpha * std::exp(x); }, kSaturating, kSaturatingFloat},
        // exp overflows above 709.78 (88.72 in float); below -708 (-87.3) it is subnormal.
        {"exp", EMBER_TAIL_OPS(exp(x)), [](long double x) { return std::exp(x); },
         [](long double x) { return std::exp(x); }, [](long double x) { return std::exp(x); },
         {-700, -100, -20, -1e-8, 0, 1e-8, 1, 20, 100, 709}, {-87, -20, -1e-4, 0, 1e-4, 1, 20, 88}},
        // log'' = -1/x² stays normal for x in [1e-150, 1e150] (float: [1e-18, 1e18]).
        {"log", EMBER_TAIL_OPS(log(x)), [](long double x) { return std::log(x); },
         [](long double x) { return 1 / x; }, [](long double x) { return -1 / (x * x); },
         {1e-150, 1e-8, 0.5, 1, 2, 1e8, 1e150}, {1e-18, 1e-4, 0.5, 1, 2, 1e4, 1e18}},
        {"log1p", EMBER_TAIL_OPS(log1p(x)), [](long double x) { return std::log1p(x); },
         [](long double x) { return 1 / (1 + x); }, [](long double x) { return -1 / ((1 + x) * (1 + x)); },
         {-0.999999, -0.5, -1e-8, 1e-8, 1, 1e8, 1e150}, {-0.999, -0.5, -1e-4, 1e-4, 1, 1e4, 1e18}},
        // sqrt'' = -x^(-3/2)/4: normal for x in [1e-200, 1e200] (float: [1e-24, 1e24]).
        {"sqrt", EMBER_TAIL_OPS(sqrt(x)), [](long double x) { return std::sqrt(x); },
         [](long double x) { return 0.5L / std::sqrt(x); }, [](long double x) { return -0.25L / (x * std::sqrt(x)); },
         {1e-200, 1e-8, 0.5, 1, 2, 1e8, 1e200}, {1e-24, 1e-4, 0.5, 1, 2, 1e4, 1e24}},
        {"rsqrt", EMBER_TAIL_OPS(rsqrt(x)), [](long double x) { return 1 / std::sqrt(x); },
         [](long double x) { return -0.5L / (x * std::sqrt(x)); },
         [](long double x) { return 0.75L / (x * x * std::sqrt(x)); }, {1e-120, 1e-8, 1, 2, 1e8, 1e120},
         {1e-14, 1e-4, 1, 2, 1e4, 1e14}},
        {"square", EMBER_TAIL_OPS(square(x)), [](long double x) { return x * x; }, [](long double x) { return 2 * x; },
         [](long double) { return 2.0L; }, {-1e150, -1, -1e-8, 1e-8, 1, 1e150}, {-1e18, -1, -1e-4, 1e-4, 1, 1e18}},
        {"pow 3", EMBER_TAIL_OPS(pow(x, 3)), [](long double x) { return x * x * x; },
         [](long double x) { return 3 * x * x; }, [](long double x) { return 6 * x; },
         {-1e100, -2, -1e-8, 1e-8, 2, 1e100}, {-1e12, -2, -1e-4, 1e-4, 2, 1e12}},
        {"pow 2.5", EMBER_TAIL_OPS(pow(x, 2.5)), [](long double x) { return std::pow(x, 2.5L); },
         [](long double x) { return 2.5L * std::pow(x, 1.5L); }, [](long double x) { return 3.75L * std::sqrt(x); },
         {1e-120, 1e-8, 1, 2, 1e8, 1e120}, {1e-10, 1e-4, 1, 2, 1e4, 1e15}},
    };
}
#undef EMBER_TAIL_OPS

// The value, the first derivative through the fused backward kernel and through the
// recorded graph (create_graph), and the second derivative, of op at each of `points`.
template <class T, class Op>
void check_tails(const char* name, Op op, const Tail& t, const std::vector<double>& points, double tolerance) {
    const Index n = static_cast<Index>(points.size());
    Tensor<T> xs = Tensor<T>::empty({n});
    for (Index i = 0; i < n; ++i) xs.data()[i] = static_cast<T>(points[static_cast<std::size_t>(i)]);
    const Var<T> x(xs, true);
    const Tensor<T> value = op(x).value();
    const Tensor<T> d1_kernel = grad(sum(op(x)), {x})[0].value();
    const Var<T> d1 = grad(sum(op(x)), {x}, {.create_graph = true})[0];
    const Tensor<T> d2 = grad(sum(d1), {x})[0].value();
    auto close = [&](T got, long double want) {
        return std::fabs(static_cast<long double>(got) - want) <= tolerance * std::fabs(want);
    };
    for (Index i = 0; i < n; ++i) {
        const long double xi = static_cast<long double>(xs.data()[i]);  // the point as T holds it
        const std::string op_name = name;
        CAPTURE(op_name);
        CAPTURE(xi);
        CHECK_MESSAGE(close(value.data()[i], t.f(xi)), "value ", value.data()[i], " vs ", static_cast<double>(t.f(xi)));
        CHECK_MESSAGE(close(d1_kernel.data()[i], t.d1(xi)), "first derivative (kernel) ", d1_kernel.data()[i], " vs ",
                      static_cast<double>(t.d1(xi)));
        CHECK_MESSAGE(close(d1.value().data()[i], t.d1(xi)), "first derivative (graph) ", d1.value().data()[i], " vs ",
                      static_cast<double>(t.d1(xi)));
        CHECK_MESSAGE(close(d2.data()[i], t.d2(xi)), "second derivative ", d2.data()[i], " vs ",
                      static_cast<double>(t.d2(xi)));
    }
}

}  // namespace

TEST_CASE("values, first and second derivatives keep their relative accuracy at every op's edge points") {
    // 1e-12 relative in double; in float 16 ulp (the forward and the derivative each round a
    // handful of times).
    for (const Tail& t : tail_table()) {
        check_tails<double>(t.name, t.op, t, t.points, 1e-12);
        check_tails<float>(t.name, t.op_float, t, t.float_points, 16 * 6e-8);
    }
}

TEST_CASE("kinks follow PyTorch's convention, for the first and the second derivative") {
    // The numbers PyTorch 1.13 gives at each kink (float64, torch.autograd.grad with
    // create_graph): the derivative of the branch taken there, and 0 for the second.
    struct Kink {
        const char* name;
        std::function<V(const V&)> op;
        double at, d1, d2;
    };
    const std::vector<Kink> kinks = {
        {"relu", [](const V& x) { return V(relu(x)); }, 0, 0, 0},
        {"leaky_relu", [](const V& x) { return V(leaky_relu(x, 0.2)); }, 0, 0.2, 0},
        {"elu", [](const V& x) { return V(elu(x, 1.5)); }, 0, 1.5, 0},
        {"abs", [](const V& x) { return V(abs(x)); }, 0, 0, 0},
        {"clamp at lo", [](const V& x) { return V(clamp(x, 0.0, 1.0)); }, 0, 1, 0},
        {"clamp at hi", [](const V& x) { return V(clamp(x, -1.0, 0.0)); }, 0, 1, 0},
        {"maximum tie", [](const V& x) { return V(maximum(x, 0.0)); }, 0, 0.5, 0},
        {"minimum tie", [](const V& x) { return V(minimum(0.0, x)); }, 0, 0.5, 0},
    };
    for (const Kink& k : kinks) {
        CAPTURE(k.name);
        const V x(Tensor<double>::full({1}, k.at), true);
        CHECK(grad(sum(k.op(x)), {x})[0].value().item() == k.d1);  // the fused kernel
        const V d1 = grad(sum(k.op(x)), {x}, {.create_graph = true})[0];
        CHECK(d1.value().item() == k.d1);  // the recorded rule
        CHECK(grad(sum(d1), {x})[0].value().item() == k.d2);  // zero where nothing depends on x
    }
    // A tie between two variables: half to each.
    const V a(Tensor<double>::full({1}, 1.0), true), b(Tensor<double>::full({1}, 1.0), true);
    const auto g = grad(sum(V(maximum(a, b))), {a, b});
    CHECK(g[0].value().item() == 0.5);
    CHECK(g[1].value().item() == 0.5);
}

TEST_CASE("binary elementwise ops under broadcasting") {
    for (const auto& b : binary_table()) {
        for (const auto& [sa, sb] : kBroadcastCases) {
            for (bool swapped : {false, true}) {
                OpRow row{b.name, swapped ? std::vector<Shape>{sb, sa} : std::vector<Shape>{sa, sb}, b.lo, b.hi,
                          [op = b.op](const Vs& v) { return op(v[0], v[1]); },
                          elementwise([f = b.ref](const std::vector<double>& a) { return f(a[0], a[1]); })};
                check_op(row);
            }
        }
    }
}

TEST_CASE("scalar operands and mixed Tensor constants") {
    check_op({"2*x+1", {{3, 4}}, -2, 2, [](const Vs& v) { return V(2.0 * v[0] + 1); },
              elementwise([](const std::vector<double>& a) { return 2 * a[0] + 1; })});
    check_op({"1/x", {{5}}, 0.5, 2, [](const Vs& v) { return V(1.0 / v[0]); },
              elementwise([](const std::vector<double>& a) { return 1 / a[0]; })});
    Tensor<double> c = Tensor<double>::from({4}, {1, -2, 3, 0.5});
    check_op({"x*c (tensor constant)", {{3, 4}}, -2, 2, [c](const Vs& v) { return V(v[0] * c); },
              [c](const Ts& in) { return Tensor<double>(in[0] * c); }});
}

TEST_CASE("the benchmark chain and a shared leaf inside one fused node") {
    auto chain = [](const Vs& v) {
        const V &a = v[0], &x = v[1], &b = v[2];
        return V(softplus(a * x + b) * sigmoid(x) - log1p(exp(-abs(x))));
    };
    auto ref = elementwise([](const std::vector<double>& a) {
        return sp(a[0] * a[1] + a[2]) * sig(a[1]) - std::log1p(std::exp(-std::fabs(a[1])));
    });
    check_op({"chain", {{4, 5}, {4, 5}, {4, 5}}, -3, 3, chain, ref});
    check_op({"chain with scalar a and row b", {{}, {4, 5}, {5}}, -3, 3, chain, ref});
}

TEST_CASE("comparisons give masks without gradient") {
    V x(Tensor<double>::from({4}, {-1, 0, 1, 2}), true);
    V m = x > 0.5;
    CHECK(m.value().to_vector() == std::vector<double>{0, 0, 1, 1});
    CHECK_FALSE(m.requires_grad());
    V n = where(x >= 0.0, x, 0.0);
    n = V(n * 1.0);
    CHECK(n.value().to_vector() == std::vector<double>{0, 0, 1, 2});
    CHECK(V(eq(x, 1.0)).value().to_vector() == std::vector<double>{0, 0, 1, 0});
}

TEST_CASE("float kernels agree with double references") {
    Generator gen(3);
    Tensor<float> x = uniform<float>({1000}, gen, -8.f, 8.f);
    const std::vector<std::pair<const char*, std::function<Tensor<float>(const Tensor<float>&)>>> ops = {
        {"softplus", [](const Tensor<float>& t) { return Tensor<float>(softplus(t)); }},
        {"sigmoid", [](const Tensor<float>& t) { return Tensor<float>(sigmoid(t)); }},
        {"log_sigmoid", [](const Tensor<float>& t) { return Tensor<float>(log_sigmoid(t)); }},
        {"tanh", [](const Tensor<float>& t) { return Tensor<float>(tanh(t)); }},
        {"exp", [](const Tensor<float>& t) { return Tensor<float>(exp(t)); }},
        {"log1p(exp(-|x|))", [](const Tensor<float>& t) { return Tensor<float>(log1p(exp(-abs(t)))); }},
    };
    const std::vector<std::function<double(double)>> refs = {
        sp, sig, [](double v) { return -sp(-v); }, [](double v) { return std::tanh(v); },
        [](double v) { return std::exp(v); }, [](double v) { return std::log1p(std::exp(-std::fabs(v))); }};
    for (std::size_t k = 0; k < ops.size(); ++k) {
        INFO(ops[k].first);
        Tensor<float> y = ops[k].second(x);
        double worst = 0;
        for (Index i = 0; i < x.numel(); ++i) {
            const double want = refs[k](x.data()[i]);
            worst = std::max(worst, std::fabs(y.data()[i] - want) / std::max(std::fabs(want), 1e-30));
        }
        // A few ulp of float (2^-23 ≈ 1.2e-7) relative error.
        CHECK(worst < 8 * 1.2e-7);
    }
}

TEST_CASE("a fused expression of 10 ops allocates one buffer and records one node") {
    Generator gen(5);
    Var<float> xf(normal<float>({1000}, gen), true);
    const auto before = pool_stats().requests;
    // neg, abs, exp, log1p, mul, add, softplus, sigmoid, mul, sub: ten ops
    Var<float> y = softplus(xf * 2.0f + 1.0f) * sigmoid(xf) - log1p(exp(-abs(xf)));
    CHECK(pool_stats().requests - before == 1);
    REQUIRE(y.node() != nullptr);
    CHECK(std::string(y.node()->name()) == "fused elementwise");
    CHECK(y.node()->inputs.size() == 1);
    CHECK(y.node()->inputs[0] == xf.impl());

    // Backward of it is that one node: the gradient arrives straight at the leaf.
    Var<float> s = sum(y);
    const auto before_bwd = pool_stats().requests;
    s.backward();
    REQUIRE(xf.grad().defined());
    // sum's backward expands (a view); the fused backward writes one gradient buffer;
    // plus the seed and the rank-0 reshape/sum_to bookkeeping of the scalar path.
    CHECK(pool_stats().requests - before_bwd <= 3);
}

TEST_CASE("errors name the op and the shapes") {
    V a(Tensor<double>::zeros({3, 4})), b(Tensor<double>::zeros({5}));
    CHECK_THROWS_WITH_AS(V(a + b), "elementwise: shapes [3,4] and [5] cannot be broadcast together", Error);
    CHECK_THROWS_WITH_AS(clamp(a, 1.0, 0.0), "clamp: lower bound 1 exceeds upper bound 0", Error);
}

TEST_CASE("invalid arguments behave alike in the fused kernel, the Var path and under create_graph") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const Tensor<double> t = Tensor<double>::from({3}, {-1.0, 0.5, 2.0});
    const V v(t, true);
    // A first-derivative graph: its values are t too, and ops on it are recorded for a second order.
    const V d1 = grad(sum(V(0.5 * square(v))), {v}, {.create_graph = true})[0];
    SUBCASE("bad bounds are the same error on a Tensor, a Var and a recorded derivative") {
        for (const V* x : {&v, &d1}) {
            CHECK_THROWS_WITH_AS(V(clamp(*x, 1.0, 0.0)), "clamp: lower bound 1 exceeds upper bound 0", Error);
            CHECK_THROWS_WITH_AS(V(clamp_min(*x, nan)), "clamp_min: the bound is NaN", Error);
            CHECK_THROWS_WITH_AS(V(clamp_max(*x, nan)), "clamp_max: the bound is NaN", Error);
        }
        CHECK_THROWS_WITH_AS(Tensor<double>(clamp(t, 1.0, 0.0)), "clamp: lower bound 1 exceeds upper bound 0", Error);
        CHECK_THROWS_WITH_AS(Tensor<double>(clamp_min(t, nan)), "clamp_min: the bound is NaN", Error);
    }
    SUBCASE("outside an op's domain every path gives the same numbers (NaN where PyTorch gives NaN)") {
        struct Case {
            const char* name;
            std::function<Tensor<double>(const Tensor<double>&)> tensor;
            std::function<V(const V&)> var;
        };
        const std::vector<Case> cases = {
            {"log", [](const Tensor<double>& x) { return Tensor<double>(log(x)); }, [](const V& x) { return V(log(x)); }},
            {"sqrt", [](const Tensor<double>& x) { return Tensor<double>(sqrt(x)); }, [](const V& x) { return V(sqrt(x)); }},
            {"rsqrt", [](const Tensor<double>& x) { return Tensor<double>(rsqrt(x)); }, [](const V& x) { return V(rsqrt(x)); }},
            {"log1p", [](const Tensor<double>& x) { return Tensor<double>(log1p(x - 1.0)); },
             [](const V& x) { return V(log1p(x - 1.0)); }},
            {"pow 2.5", [](const Tensor<double>& x) { return Tensor<double>(pow(x, 2.5)); },
             [](const V& x) { return V(pow(x, 2.5)); }},
        };
        auto same = [](double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; };
        for (const Case& c : cases) {
            CAPTURE(c.name);
            const Tensor<double> fused = c.tensor(t);
            const Tensor<double> forward = c.var(v).value(), on_derivative = c.var(d1).value();
            const Tensor<double> g_kernel = grad(sum(c.var(v)), {v})[0].value();
            const V g_graph = grad(sum(c.var(v)), {v}, {.create_graph = true})[0];
            const Tensor<double> g2 = grad(sum(g_graph), {v})[0].value();
            CHECK(std::isnan(fused.flat(0)));  // x = -1 is outside every one of these domains
            for (Index i = 0; i < 3; ++i) {
                CAPTURE(i);
                CHECK(same(fused.flat(i), forward.flat(i)));
                CHECK(same(fused.flat(i), on_derivative.flat(i)));
                CHECK(same(g_kernel.flat(i), g_graph.value().flat(i)));
                CHECK(std::isnan(g2.flat(i)) == std::isnan(g_kernel.flat(i)));
            }
        }
    }
}


TEST_CASE("NaN propagates through relu, maximum, minimum and clamp, as in PyTorch") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor<double> x = Tensor<double>::from({2}, {nan, 1.0});
    for (const Tensor<double>& y : {Tensor<double>(relu(x)), Tensor<double>(maximum(x, 0.5)), Tensor<double>(minimum(0.5, x)),
                                    Tensor<double>(clamp(x, -1.0, 0.5))}) {
        CHECK(std::isnan(y.flat(0)));
        CHECK_FALSE(std::isnan(y.flat(1)));
    }
}

TEST_CASE("column views (shape [N,1], rows strided) are read with their strides, forward and backward") {
    // x[:, 0:1] of a [4,3] tensor has shape [4,1] and strides [3,1]: its last axis is
    // contiguous, yet consecutive elements are 3 apart. A regression test: the kernel once
    // read such a view as if it were contiguous.
    Tensor<double> x = Tensor<double>::from({4, 3}, {0.3, -0.7, 1.1, -1.2, 0.4, 0.9, 2.0, 1.0, -0.5, 0.6, 0.2, 1.5});
    const Tensor<double> a = x.slice(1, 0, 1), c = x.slice(1, 2, 3);
    const Tensor<double> y(a * c + 2.0 * a);
    for (Index i = 0; i < 4; ++i) CHECK(y.flat(i) == doctest::Approx(x.flat(3 * i) * x.flat(3 * i + 2) + 2 * x.flat(3 * i)));
    const V xv(x, true);
    const V yv(slice(xv, 1, 0, 1) * slice(xv, 1, 2, 3));
    const Tensor<double> g = grad(sum(yv), {xv})[0].value();
    for (Index i = 0; i < 4; ++i) {
        CHECK(yv.value().flat(i) == doctest::Approx(x.flat(3 * i) * x.flat(3 * i + 2)));
        CHECK(g.flat(3 * i) == doctest::Approx(x.flat(3 * i + 2)));
        CHECK(g.flat(3 * i + 1) == 0.0);
        CHECK(g.flat(3 * i + 2) == doctest::Approx(x.flat(3 * i)));
    }
}
