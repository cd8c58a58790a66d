// Anomaly mode (autodiff/anomaly.hpp): the first op that produces NaN/Inf, forward or
// backward, is named with its shapes; leaves may hold non-finite values; off, NaN passes
// silently; the guard restores the previous state.
#include <cmath>
#include <limits>
#include <string>
#include <thread>

#include "harness.hpp"

using namespace ember;

namespace {

// The message of the ember::Error that f throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

template <class T>
Var<T> var(const Shape& s, std::initializer_list<T> v, bool requires_grad = true) {
    return Var<T>(Tensor<T>::from(s, v), requires_grad);
}

template <class T>
bool has_non_finite(const Tensor<T>& t) {
    for (Index i = 0; i < t.numel(); ++i)
        if (!std::isfinite(t.flat(i))) return true;
    return false;
}

}  // namespace

TEST_CASE("anomaly: off by default; the guard and set_detect_anomaly restore and nest") {
    CHECK_FALSE(anomaly_enabled());
    {
        DetectAnomaly on;
        CHECK(anomaly_enabled());
        {
            DetectAnomaly off(false);
            CHECK_FALSE(anomaly_enabled());
        }
        CHECK(anomaly_enabled());
        // Thread-local, like grad mode: another thread starts with it off.
        bool other = true;
        std::thread([&] { other = anomaly_enabled(); }).join();
        CHECK_FALSE(other);
    }
    CHECK_FALSE(anomaly_enabled());
    // The previous state comes back when an anomaly unwinds the scope.
    Var<double> x = var<double>({2}, {-1.0, 1.0});
    CHECK_THROWS_AS(([&] {
                        DetectAnomaly on;
                        Var<double> y = log(x);
                    }()),
                    Error);
    CHECK_FALSE(anomaly_enabled());
    set_detect_anomaly(true);
    CHECK(anomaly_enabled());
    {
        DetectAnomaly off(false);
        CHECK_FALSE(anomaly_enabled());
    }
    CHECK(anomaly_enabled());
    set_detect_anomaly(false);
    CHECK_FALSE(anomaly_enabled());
}

TEST_CASE_TEMPLATE("anomaly: log of a negative number inside a fused expression names 'log'", T, float, double) {
    Var<T> x = var<T>({2, 3}, {1, 2, 3, 4, -2, 6});
    Var<T> w = var<T>({3}, {1, 1, 1});
    DetectAnomaly guard;
    const std::string msg = error_of([&] { Var<T> y = sum(Var<T>(softplus(log(x + T(1)) * w))); });
    INFO(msg);
    CHECK(msg.find("detect_anomaly: forward of 'log' produced NaN") == 0);
    CHECK(msg.find("fused elementwise softplus(mul(log(add(#0, 1)), #1))") != std::string::npos);
    CHECK(msg.find("output of shape [2,3]") != std::string::npos);
    CHECK(msg.find("element 4 ([1,1]) = nan") != std::string::npos);
    CHECK(msg.find("'log' of -1 gave nan") != std::string::npos);
    CHECK(msg.find("inputs: #0 Var [2,3], #1 Var [3]") != std::string::npos);
}

TEST_CASE_TEMPLATE("anomaly: a non-fused op that overflows is named with its input shapes", T, float, double) {
    const T big = std::is_same_v<T, float> ? T(1e30) : T(1e200);
    Var<T> a(Tensor<T>::full({2, 3}, big), true);
    Var<T> b(Tensor<T>::full({3, 4}, big), true);
    DetectAnomaly guard;
    const std::string msg = error_of([&] { Var<T> y = matmul(a, b); });
    INFO(msg);
    CHECK(msg.find("detect_anomaly: forward of 'matmul' produced +Inf: output of shape [2,4], "
                   "first non-finite element 0 ([0,0]) = inf") == 0);
    CHECK(msg.find("input shapes: [2,3], [3,4]") != std::string::npos);
}

TEST_CASE_TEMPLATE("anomaly: 0/0 in a matmul and reduction chain stops at the division", T, float, double) {
    // h = x·W has rows summing to 0 in row 1; h / sum(h, 1) is 0/0 there.
    Var<T> x = var<T>({2, 2}, {1, 2, 0, 0});
    Var<T> W = var<T>({2, 3}, {1, -2, 2, 0.5, 0.5, -1});
    auto step = [&] {
        Var<T> h = matmul(x, W);
        Var<T> n = sum(h, 1, true);
        Var<T> p = Var<T>(h / n);
        return mean(Var<T>(square(p)));
    };
    {
        DetectAnomaly guard;
        const std::string msg = error_of(step);
        INFO(msg);
        CHECK(msg.find("forward of 'div' produced NaN in fused elementwise div(#0, #1)") != std::string::npos);
        CHECK(msg.find("output of shape [2,3]") != std::string::npos);
        CHECK(msg.find("element 3 ([1,0]) = nan") != std::string::npos);
        CHECK(msg.find("'div' of 0, 0 gave nan") != std::string::npos);
        CHECK(msg.find("inputs: #0 Var [2,3], #1 Var [2,1]") != std::string::npos);
    }
    // Off: the same chain runs to the end, NaN passes through silently (as in PyTorch).
    Var<T> loss = step();
    CHECK(std::isnan(loss.item()));
    loss.backward();
    CHECK(has_non_finite(W.grad()));
}

TEST_CASE_TEMPLATE("anomaly: sqrt at 0 is fine forward; its backward's Inf names the backward", T, float, double) {
    Var<T> x = var<T>({3}, {4, 0, 1});
    DetectAnomaly guard;
    Var<T> y = sum(Var<T>(sqrt(x) * T(3)));  // forward is finite
    CHECK(y.item() == doctest::Approx(9));
    const std::string msg = error_of([&] { y.backward(); });
    INFO(msg);
    CHECK(msg.find("detect_anomaly: backward of 'sqrt' produced +Inf in gradient of input 0 of shape [3]") == 0);
    CHECK(msg.find("first non-finite element 1 ([1]) = inf") != std::string::npos);
    CHECK(msg.find("node 'fused elementwise' with output of shape [3]") != std::string::npos);
    CHECK(msg.find("incoming gradient of shape [3], input shapes: [3]") != std::string::npos);
    CHECK(msg.find("'sqrt' is part of fused elementwise mul(sqrt(#0), 3)") != std::string::npos);
    CHECK(msg.find("at its output element 1 ([1]) its derivative for operand 0 got operands (0), output 0, "
                   "incoming gradient 3 and gave inf") != std::string::npos);

    // grad() is checked the same way.
    Var<T> y2 = sum(Var<T>(sqrt(x) * T(3)));
    CHECK(error_of([&] { grad(y2, {x}); }).find("backward of 'sqrt' produced +Inf") != std::string::npos);

    // With create_graph the derivative is itself recorded: the op inside it is named, and
    // which backward it was recorded for.
    Var<T> y3 = sum(Var<T>(sqrt(x) * T(3)));
    const std::string m3 = error_of([&] { grad(y3, {x}, {.create_graph = true}); });
    INFO(m3);
    CHECK(m3.find("forward of 'div' produced +Inf") != std::string::npos);
    CHECK(m3.find("(recorded while computing the backward of 'fused elementwise')") != std::string::npos);
}

TEST_CASE("anomaly: a backward stopped part-way leaves no gradient pending for the next one") {
    // Reverse order of the walk: t = W·5 gives W a pending gradient, then sqrt's backward
    // fails before W (used by r too) is complete. W's next backward must not include it.
    Var<double> W = var<double>({2}, {1, 2});
    Var<double> x = var<double>({2}, {0, 1});
    {
        DetectAnomaly guard;
        Var<double> r = Var<double>(W * 3.0), s = Var<double>(sqrt(x)), t = Var<double>(W * 5.0);
        Var<double> loss = sum(Var<double>(r + s + t));
        CHECK(error_of([&] { loss.backward(); }).find("backward of 'sqrt'") != std::string::npos);
    }
    W.zero_grad();
    sum(Var<double>(W * 1.0)).backward();
    CHECK(W.grad().to_vector() == std::vector<double>{1, 1});
}

TEST_CASE_TEMPLATE("anomaly: a backward that overflows is named by its node", T, float, double) {
    // Forward values are finite; d(a·b)/da = g·bᵀ overflows.
    const T tiny = std::is_same_v<T, float> ? T(1e-30) : T(1e-200);
    const T big = std::is_same_v<T, float> ? T(1e30) : T(1e200);
    Var<T> a(Tensor<T>::full({1, 2}, tiny), true);
    Var<T> b(Tensor<T>::full({2, 1}, big), true);
    DetectAnomaly guard;
    Var<T> y = sum(Var<T>(matmul(a, b) * big));
    const std::string msg = error_of([&] { y.backward(); });
    INFO(msg);
    CHECK(msg.find("detect_anomaly: backward of 'matmul' produced +Inf in gradient of input 0 of shape [1,2]") == 0);
    CHECK(msg.find("node 'matmul' with output of shape [1,1], incoming gradient of shape [1,1], "
                   "input shapes: [1,2], [2,1]") != std::string::npos);
}

TEST_CASE_TEMPLATE("anomaly: non-finite leaves are not errors, only values ops produce", T, float, double) {
    const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
    DetectAnomaly guard;
    SUBCASE("a -inf mask propagates through add, exp and matmul without error") {
        Var<T> s = var<T>({2, 2}, {1, 2, 3, 4});
        Var<T> mask = var<T>({2, 2}, {0, -inf, 0, 0}, false);
        Var<T> masked = Var<T>(s + mask);  // -inf, but it came from a leaf
        Var<T> p = Var<T>(exp(masked));
        Var<T> y = sum(matmul(p, s));
        y.backward();
        CHECK(std::isfinite(y.item()));
        CHECK_FALSE(has_non_finite(s.grad()));
    }
    SUBCASE("NaN data masked out with where") {
        Var<T> d = var<T>({3}, {1, nan, 2});
        const Tensor<T> missing = Tensor<T>::from({3}, {0, 1, 0});
        Var<T> clean = Var<T>(where(missing, T(0), d * T(2)));  // d * 2 is NaN, from the leaf
        sum(clean).backward();
        CHECK(d.grad().to_vector() == std::vector<T>{2, 0, 2});
    }
    SUBCASE("a NaN leaf that just propagates is let through, forward and backward") {
        Var<T> d = var<T>({2, 2}, {1, nan, 2, 3});
        Var<T> w = var<T>({2, 1}, {1, 1});
        Var<T> y = sum(Var<T>(matmul(d, w) * T(2)));
        CHECK(std::isnan(y.item()));
        y.backward();
        CHECK(has_non_finite(w.grad()));
    }
    SUBCASE("a new NaN next to a propagated one is still caught, at its own element") {
        Var<T> x = var<T>({3}, {-inf, 2, -1});
        const std::string msg = error_of([&] { Var<T> y = log(x); });
        INFO(msg);
        CHECK(msg.find("forward of 'log' produced NaN") != std::string::npos);
        CHECK(msg.find("element 2 ([2]) = nan ('log' of -1 gave nan)") != std::string::npos);
    }
    SUBCASE("a non-finite scalar constant counts as a leaf") {
        Var<T> x = var<T>({2}, {1, 2});
        Var<T> y = Var<T>(x * inf);
        CHECK(std::isinf(y.value().flat(0)));
    }
}

TEST_CASE_TEMPLATE("anomaly: off lets NaN and Inf through silently, forward and backward", T, float, double) {
    CHECK_FALSE(anomaly_enabled());
    Var<T> x = var<T>({3}, {-1, 0, 1});
    Var<T> y = sum(Var<T>(log(x) + sqrt(x)));
    CHECK(std::isnan(y.item()));
    y.backward();
    CHECK(has_non_finite(x.grad()));
}

TEST_CASE("anomaly: checks see views and reductions (non-contiguous outputs)") {
    // A fused expression over a transposed (non-contiguous) view.
    Var<double> x = var<double>({2, 3}, {1, 2, 3, 4, 5, 6});
    DetectAnomaly guard;
    Var<double> t = transpose(x);  // non-contiguous output, finite: no error
    CHECK(t.shape() == Shape{3, 2});
    const std::string msg = error_of([&] { Var<double> y = Var<double>(log(t - 4.0)); });
    INFO(msg);
    CHECK(msg.find("forward of 'log' produced") != std::string::npos);
    // t - 4 = [[-3,0],[-2,1],[-1,2]]: log(-3) is the first non-finite value.
    CHECK(msg.find("element 0 ([0,0]) = nan ('log' of -3 gave nan)") != std::string::npos);
    CHECK(msg.find("inputs: #0 Var [3,2]") != std::string::npos);
    CHECK(detail::first_non_finite(Tensor<double>::from({2, 2}, {1, 2, 3, std::nan("")}).transpose()) == 3);
    CHECK(detail::first_non_finite(Tensor<double>::from({2, 2}, {1, std::nan(""), 3, 4}).transpose()) == 2);
    CHECK(detail::first_non_finite(Tensor<float>::full({1000}, 1.f)) == -1);
    Tensor<float> big = Tensor<float>::full({1001}, 1.f);
    big.data()[997] = -std::numeric_limits<float>::infinity();
    CHECK(detail::first_non_finite(big) == 997);
    CHECK(detail::first_non_finite(big, 998) == -1);
}

TEST_CASE_TEMPLATE("anomaly: the scan finds NaN, +Inf and -Inf at every position", T, float, double) {
    const T bad[] = {std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                     -std::numeric_limits<T>::infinity()};
    for (Index n : {1, 7, 64, 150}) {
        Tensor<T> t = Tensor<T>::full({n}, T(1.5));
        CHECK(detail::first_non_finite(t) == -1);
        for (T b : bad) {
            for (Index i = 0; i < n; ++i) {
                t.data()[i] = b;
                CHECK(detail::first_non_finite(t) == i);
                CHECK(detail::first_non_finite(t.data(), n) == i);
                t.data()[i] = std::numeric_limits<T>::max();  // large but finite
            }
            CHECK(detail::first_non_finite(t) == -1);
            t = Tensor<T>::full({n}, T(1.5));
        }
    }
}
