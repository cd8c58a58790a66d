#pragma once
/// \file
/// Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_ (PyTorch 1.13).
/// Both modify the parameters' gradients in place; parameters without a gradient are
/// ignored.
///
/// clip_grad_norm_: the total norm N of all gradients taken together (as one concatenated
/// vector; order norm_type, inf allowed), then every gradient is multiplied by
/// min(1, max_norm / (N + 1e-6)). Returns N, the norm before clipping. (PyTorch multiplies
/// even when the factor is 1; skipping that pass changes no value.) The norm is accumulated
/// in double for both float and double gradients, in a fixed order, so it does not depend
/// on the thread count.
///
/// clip_grad_value_: clamps every gradient element to [-clip_value, clip_value]; NaN stays
/// NaN, as with torch.clamp.
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"

namespace ember {

/// Settings of clip_grad_norm_, as torch.nn.utils.clip_grad_norm_'s arguments.
struct ClipNormOptions {
    double norm_type = 2.0;           ///< p of the p-norm; std::numeric_limits<double>::infinity() for max |g|
    bool error_if_nonfinite = false;  ///< throw instead of scaling by a NaN/inf norm (PyTorch's default is false)
};

namespace detail {
// Σ f(x) over the elements of t, with four interleaved partial sums (so the loop can use
// vector registers) combined in a fixed order.
template <Real T, class F>
double sum_elements(const Tensor<T>& t, F&& f) {
    const Tensor<T> c = t.contiguous();
    const T* x = c.data();
    const Index n = c.numel();
    double s[4] = {0, 0, 0, 0};
    Index i = 0;
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; ++k) s[k] += f(static_cast<double>(x[i + k]));
    for (; i < n; ++i) s[0] += f(static_cast<double>(x[i]));
    return (s[0] + s[1]) + (s[2] + s[3]);
}

template <Real T>
double total_grad_norm(const std::vector<Var<T>>& params, double norm_type) {
    double total = 0;
    if (std::isinf(norm_type)) {
        bool nan = false;
        for (const Var<T>& p : params) {
            if (!p.grad().defined()) continue;
            const Tensor<T> c = p.grad().contiguous();
            for (Index i = 0; i < c.numel(); ++i) {
                const double a = std::fabs(static_cast<double>(c.data()[i]));
                nan = nan || std::isnan(a);
                total = std::max(total, a);
            }
        }
        return nan ? std::numeric_limits<double>::quiet_NaN() : total;
    }
    for (const Var<T>& p : params) {
        if (!p.grad().defined()) continue;
        if (norm_type == 2) total += sum_elements(p.grad(), [](double x) { return x * x; });
        else if (norm_type == 1) total += sum_elements(p.grad(), [](double x) { return std::fabs(x); });
        else total += sum_elements(p.grad(), [norm_type](double x) { return std::pow(std::fabs(x), norm_type); });
    }
    if (norm_type == 2) return std::sqrt(total);
    if (norm_type == 1) return total;
    return std::pow(total, 1 / norm_type);
}
}  // namespace detail

/// Scales all gradients together so that their total norm is at most max_norm; returns the
/// total norm before scaling (0 when no parameter has a gradient).
template <Real T>
double clip_grad_norm_(const std::vector<Var<T>>& params, double max_norm, ClipNormOptions options = {}) {
    EMBER_CHECK(max_norm >= 0, "clip_grad_norm_", "max_norm must be >= 0, got ", max_norm);
    EMBER_CHECK(options.norm_type > 0, "clip_grad_norm_", "norm_type must be > 0 (or infinity), got ",
                options.norm_type);
    const double total = detail::total_grad_norm(params, options.norm_type);
    EMBER_CHECK(!options.error_if_nonfinite || std::isfinite(total), "clip_grad_norm_",
                "the total norm of order ", options.norm_type, " of the gradients is ", total,
                ", so they cannot be clipped; set error_if_nonfinite = false to scale by it anyway");
    // clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1 (NaN stays NaN).
    const double coef = max_norm / (total + 1e-6);
    const double clamped = coef < 1.0 || std::isnan(coef) ? coef : 1.0;
    if (clamped != 1.0) {
        NoGrad no_grad;
        for (const Var<T>& p : params)
            if (p.grad().defined()) assign(p.grad(), p.grad() * clamped);
    }
    return total;
}
/// clip_grad_norm_ for a braced list of parameters.
template <Real T>
double clip_grad_norm_(std::initializer_list<Var<T>> params, double max_norm, ClipNormOptions options = {}) {
    return clip_grad_norm_(std::vector<Var<T>>(params), max_norm, options);
}

/// Clamps every gradient element to [-clip_value, clip_value].
template <Real T>
void clip_grad_value_(const std::vector<Var<T>>& params, double clip_value) {
    EMBER_CHECK(clip_value >= 0, "clip_grad_value_", "clip_value must be >= 0, got ", clip_value);
    NoGrad no_grad;
    for (const Var<T>& p : params) {
        const Tensor<T>& g = p.grad();
        if (!g.defined()) continue;
        // Comparisons rather than clamp(): they are false for NaN, which therefore passes through.
        assign(g, where(g > clip_value, clip_value, where(g < -clip_value, -clip_value, g)));
    }
}
/// clip_grad_value_ for a braced list of parameters.
template <Real T>
void clip_grad_value_(std::initializer_list<Var<T>> params, double clip_value) {
    clip_grad_value_(std::vector<Var<T>>(params), clip_value);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CLIP_INSTANCES(X, T) \
    X template double detail::total_grad_norm<T>(const std::vector<Var<T>>&, double); \
    X template double clip_grad_norm_<T>(const std::vector<Var<T>>&, double, ClipNormOptions); \
    X template void clip_grad_value_<T>(const std::vector<Var<T>>&, double);
EMBER_EXTERN_INSTANCES(EMBER_CLIP_INSTANCES)

}  // namespace ember
