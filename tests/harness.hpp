#pragma once
// One table-driven harness for every differentiable op (after Stan Math's expect_ad):
// a row names the op, its input shapes and domain, the op itself and a reference
// computation; check_op() then verifies the forward value against the reference, the
// gradient by gradcheck and the gradient of the gradient by gradgradcheck, all in double.
#include <doctest/doctest.h>

#include <ember/ember.hpp>
#include <functional>
#include <string>
#include <vector>

namespace ember::test {

using V = Var<double>;
using Vs = std::vector<V>;
using Ts = std::vector<Tensor<double>>;

// Runs the enclosing scope on one thread: for tests on tiny tensors, where forking threads
// per op costs more than it saves (and a busy second core would stall them).
struct OneThread {
    int saved = num_threads();
    OneThread() { set_num_threads(1); }
    ~OneThread() { set_num_threads(saved); }
    OneThread(const OneThread&) = delete;
    OneThread& operator=(const OneThread&) = delete;
};

struct OpRow {
    std::string name;
    std::vector<Shape> shapes;
    double lo = -2, hi = 2;                                // inputs drawn uniformly from [lo, hi]
    std::function<V(const Vs&)> op;
    std::function<Tensor<double>(const Ts&)> reference;  // direct computation of the value
    bool second_order = true;                             // run gradgradcheck too
    double forward_tol = 1e-12;
};

// Reference for an elementwise op: the scalar function applied under NumPy broadcasting.
inline std::function<Tensor<double>(const Ts&)> elementwise(std::function<double(const std::vector<double>&)> f) {
    return [f](const Ts& in) {
        Shape s;
        for (const auto& t : in) s = broadcast_shapes(s, t.shape(), "reference");
        std::vector<Tensor<double>> ex;
        for (const auto& t : in) ex.push_back(t.expand(s));
        Tensor<double> out = Tensor<double>::empty(s);
        std::vector<double> args(in.size());
        for (Index i = 0; i < s.numel(); ++i) {
            for (std::size_t k = 0; k < in.size(); ++k) args[k] = ex[k].flat(i);
            out.data()[i] = f(args);
        }
        return out;
    };
}

inline std::string describe(const OpRow& row) {
    std::string s = row.name + " on";
    for (const auto& sh : row.shapes) {  // appended piece by piece: g++ 12 warns (falsely) on " " + string
        s += ' ';
        s += sh.str();
    }
    return s;
}

inline void check_op(const OpRow& row, std::uint64_t seed = 1) {
    INFO(describe(row));
    Generator gen(seed);
    Ts inputs;
    for (const auto& s : row.shapes) inputs.push_back(uniform<double>(s, gen, row.lo, row.hi));

    Vs vars;
    for (const auto& t : inputs) vars.emplace_back(t);
    const Tensor<double> got = row.op(vars).value();
    const Tensor<double> want = row.reference(inputs);
    REQUIRE(got.shape() == want.shape());
    double worst = 0;
    for (Index i = 0; i < got.numel(); ++i) {
        const double err = std::fabs(got.flat(i) - want.flat(i)) / (1 + std::fabs(want.flat(i)));
        worst = std::max(worst, err);
    }
    CHECK_MESSAGE(worst <= row.forward_tol, "forward differs from reference by ", worst);

    const CheckResult first = gradcheck(row.op, inputs);
    CHECK_MESSAGE(first.ok, "gradcheck: ", first.message);
    if (row.second_order) {
        const CheckResult second = gradgradcheck(row.op, inputs);
        CHECK_MESSAGE(second.ok, "gradgradcheck: ", second.message);
    }
}

}  // namespace ember::test
