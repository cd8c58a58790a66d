#pragma once
/// \file
/// gradcheck / gradgradcheck, like PyTorch's: central finite differences in double
/// precision against the autodiff gradient. A non-scalar output y is reduced to the scalar
/// Σ y·r with a fixed random r, so every output element is exercised. On failure the
/// message names the worst element: input, flat index, analytic and numeric values.
#include <cmath>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ember/autodiff/engine.hpp"
#include "ember/core/random.hpp"
#include "ember/ops/reduce.hpp"

namespace ember {

/// The verdict of gradcheck / gradgradcheck.
struct CheckResult {
    /// True when every element is within tolerance.
    bool ok = true;
    /// "ok; worst ..." or "gradient mismatch at ...", naming the worst element.
    std::string message;
    double worst_error = 0;  ///< largest |analytic - numeric| / (atol + rtol·|numeric|)
    /// ok.
    explicit operator bool() const { return ok; }
};

/// Step and tolerances of gradcheck: an element passes when |analytic - numeric| <=
/// atol + rtol·|numeric|.
struct GradcheckOptions {
    /// Finite-difference step (central differences, x ± eps).
    double eps = 1e-6;
    /// Absolute tolerance.
    double atol = 1e-5;
    /// Relative tolerance.
    double rtol = 1e-4;
};

/// A function of double Vars to check; it returns one Var (reduced to a scalar if needed).
using VarFunction = std::function<Var<double>(const std::vector<Var<double>>&)>;

namespace detail {
inline Var<double> project_to_scalar(const Var<double>& y, std::uint64_t seed) {
    if (y.numel() == 1 && y.rank() == 0) return y;
    Generator gen(seed);
    Tensor<double> r = normal<double>(y.shape(), gen);
    return sum(Var<double>(y * r));
}
}  // namespace detail

/// Compares f's autodiff gradient with respect to each input against central finite
/// differences of f at `inputs`, element by element.
inline CheckResult gradcheck(const VarFunction& f, const std::vector<Tensor<double>>& inputs, GradcheckOptions o = {}) {
    std::vector<Var<double>> vars;
    for (const auto& t : inputs) vars.emplace_back(t.clone(), true);
    Var<double> y = detail::project_to_scalar(f(vars), 7);
    std::vector<Var<double>> analytic = y.requires_grad() ? grad(y, vars) : std::vector<Var<double>>{};
    CheckResult res;
    std::ostringstream msg;
    for (std::size_t i = 0; i < inputs.size(); ++i) {
        Tensor<double> a = analytic.empty() ? Tensor<double>::zeros(inputs[i].shape()) : analytic[i].value().contiguous();
        for (Index k = 0; k < inputs[i].numel(); ++k) {
            // Inputs require grad here too, so a function that differentiates
            // internally (gradgradcheck's h) evaluates the same way.
            auto eval_at = [&](double delta) {
                std::vector<Var<double>> xs;
                for (std::size_t j = 0; j < inputs.size(); ++j) {
                    Tensor<double> t = inputs[j].clone();
                    if (j == i) t.data()[k] += delta;
                    xs.emplace_back(t, true);
                }
                return detail::project_to_scalar(f(xs), 7).item();
            };
            const double numeric = (eval_at(o.eps) - eval_at(-o.eps)) / (2 * o.eps);
            const double an = a.data()[k];
            const double err = std::fabs(an - numeric) / (o.atol + o.rtol * std::fabs(numeric));
            if (!(err <= res.worst_error) || std::isnan(an)) {  // NaN counts as the worst
                res.worst_error = std::isnan(err) ? INFINITY : err;
                msg.str("");
                msg << "input " << i << " " << inputs[i].shape().str() << " element " << k << ": analytic " << an
                    << ", numeric " << numeric;
            }
        }
    }
    res.ok = res.worst_error <= 1.0;
    res.message = (res.ok ? "ok; worst " : "gradient mismatch at ") + msg.str();
    return res;
}

/// Checks the gradient of the gradient: h(x) = Σ_i <∇_i f(x), v_i> (fixed random v_i),
/// with ∇f recorded by create_graph, must match finite differences of h.
inline CheckResult gradgradcheck(const VarFunction& f, const std::vector<Tensor<double>>& inputs, GradcheckOptions o = {}) {
    VarFunction h = [&f](const std::vector<Var<double>>& xs) {
        Var<double> y = detail::project_to_scalar(f(xs), 7);
        if (!y.requires_grad()) return Var<double>::constant(0.0);
        std::vector<Var<double>> g = grad(y, xs, {.create_graph = true});
        Var<double> total = Var<double>::constant(0.0);
        Generator gen(11);
        for (const auto& gi : g) {
            Tensor<double> v = normal<double>(gi.shape(), gen);
            total = Var<double>(total + sum(Var<double>(gi * v)));
        }
        return total;
    };
    return gradcheck(h, inputs, o);
}

}  // namespace ember
