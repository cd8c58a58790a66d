#pragma once
/// \file
/// Adam and AdamW: PyTorch 1.13's torch/optim/adam.py and adamw.py (_single_tensor_adam(w)).
/// At update t (the parameter's step count, starting at 1):
///
///     d  = ±g (+ weight_decay·p for Adam: L2 decay coupled into the gradient)
///     m  = β1·m + (1 − β1)·d                                  state "exp_avg"
///     v  = β2·v + (1 − β2)·d·d                                state "exp_avg_sq"
///     v̂  = max(v̂, v) with amsgrad (the max of the raw, not bias-corrected, v,
///          as PyTorch's code does)                             state "max_exp_avg_sq"
///     p  = p − (lr / (1 − β1^t)) · m / (sqrt(v or v̂) / sqrt(1 − β2^t) + eps)
/// AdamW instead decays the parameter directly (decoupled, Loshchilov & Hutter), before the
/// step above and with no decay term in d:  p = p·(1 − lr·weight_decay).
/// Note eps is added after dividing sqrt(v) by sqrt(1 − β2^t), as PyTorch does.
#include <array>
#include <cmath>

#include "ember/core/instances.hpp"
#include "ember/optim/optimizer.hpp"

namespace ember {

/// Adam's settings, as torch.optim.Adam's arguments.
struct AdamOptions {
    /// Learning rate.
    double lr = 1e-3;
    /// β1 and β2, the decay rates of the first and second moment averages.
    std::array<double, 2> betas{0.9, 0.999};
    /// Added to the denominator for numerical stability.
    double eps = 1e-8;
    double weight_decay = 0;  ///< coupled (L2): added to the gradient
    /// Use the maximum of the second moments seen so far (AMSGrad).
    bool amsgrad = false;
    /// Maximise the objective instead of minimising it.
    bool maximize = false;
};

/// The same fields as AdamOptions; only the default weight decay differs (as in PyTorch).
struct AdamWOptions {
    /// Learning rate.
    double lr = 1e-3;
    /// β1 and β2, the decay rates of the first and second moment averages.
    std::array<double, 2> betas{0.9, 0.999};
    /// Added to the denominator for numerical stability.
    double eps = 1e-8;
    double weight_decay = 1e-2;  ///< decoupled: p ← p·(1 − lr·weight_decay)
    /// Use the maximum of the second moments seen so far (AMSGrad).
    bool amsgrad = false;
    /// Maximise the objective instead of minimising it.
    bool maximize = false;
};

namespace detail {

// Adam (Decoupled = false) and AdamW (true); Options is AdamOptions or AdamWOptions.
template <Real T, class Options, bool Decoupled>
class AdamFamily : public Optimizer<T> {
public:
    Options options() const {
        Options o = opts_;
        o.lr = this->lr();
        return o;
    }

    std::vector<std::string> state_keys() const override {
        if (opts_.amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
        return {"exp_avg", "exp_avg_sq"};
    }

protected:
    AdamFamily(const char* name, std::vector<Var<T>> params, const Options& options)
        : Optimizer<T>(name, std::move(params), options.lr), opts_(validated(name, options)) {}

private:
    static Options validated(const char* name, const Options& o) {
        check_nonnegative(name, "eps", o.eps);
        EMBER_CHECK(o.betas[0] >= 0 && o.betas[0] < 1, name, "beta1 must be in [0,1), got ", o.betas[0]);
        EMBER_CHECK(o.betas[1] >= 0 && o.betas[1] < 1, name, "beta2 must be in [0,1), got ", o.betas[1]);
        check_nonnegative(name, "weight_decay", o.weight_decay);
        return o;
    }

    void update(std::size_t index, const Tensor<T>& p, const Tensor<T>& g, ParamState<T>& s) override {
        const double lr = this->lr(), beta1 = opts_.betas[0], beta2 = opts_.betas[1], eps = opts_.eps;
        const Tensor<T> m = this->zeros_state(index, s, "exp_avg");
        const Tensor<T> v = this->zeros_state(index, s, "exp_avg_sq");
        // Scalars in double, as PyTorch computes them in Python (`beta1 ** step` is pow()).
        const double t = static_cast<double>(s.step);
        const double bias_correction1 = 1 - std::pow(beta1, t);
        const double bias_correction2 = 1 - std::pow(beta2, t);
        const double step_size = lr / bias_correction1;
        const double bias_correction2_sqrt = std::sqrt(bias_correction2);

        const double coupled_decay = Decoupled ? 0.0 : opts_.weight_decay;
        const Tensor<T> max_v = opts_.amsgrad ? this->zeros_state(index, s, "max_exp_avg_sq") : v;
        blockwise(
            [&](const Tensor<T>& p, const Tensor<T>& g, const Tensor<T>& m, const Tensor<T>& v, const Tensor<T>& max_v) {
                with_effective_grad(g, p, opts_.maximize, coupled_decay, [&](const auto& d) {
                    assign(m, m * beta1 + (1 - beta1) * d);     // exp_avg.mul_(beta1).add_(grad, alpha=1-beta1)
                    assign(v, v * beta2 + (1 - beta2) * d * d);  // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1-beta2)
                });
                Tensor<T> second = v;
                if (opts_.amsgrad) {
                    second = max_v;
                    assign(second, maximum(second, v));  // torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
                }
                // denom = (sqrt(v) / bias_correction2_sqrt).add_(eps); param.addcdiv_(exp_avg, denom, value=-step_size)
                const auto adam_step = (-step_size) * m / (sqrt(second) / bias_correction2_sqrt + eps);
                if constexpr (Decoupled) assign(p, p * (1 - lr * opts_.weight_decay) + adam_step);  // param.mul_(1 - lr*wd) first
                else assign(p, p + adam_step);
            },
            p, g, m, v, max_v);
    }

    Options opts_;
};

}  // namespace detail

/// Adam with coupled (L2) weight decay, as torch.optim.Adam (see the file description);
/// options() gives the options with the current lr.
template <Real T>
class Adam final : public detail::AdamFamily<T, AdamOptions, false> {
public:
    /// Adam over `params` (distinct contiguous leaves that require grad).
    explicit Adam(std::vector<Var<T>> params, AdamOptions options = {})
        : detail::AdamFamily<T, AdamOptions, false>("Adam", std::move(params), options) {}
};

/// AdamW: Adam with decoupled weight decay, as torch.optim.AdamW (see the file description);
/// options() gives the options with the current lr.
template <Real T>
class AdamW final : public detail::AdamFamily<T, AdamWOptions, true> {
public:
    /// AdamW over `params` (distinct contiguous leaves that require grad).
    explicit AdamW(std::vector<Var<T>> params, AdamWOptions options = {})
        : detail::AdamFamily<T, AdamWOptions, true>("AdamW", std::move(params), options) {}
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_ADAM_INSTANCES(X, T) \
    X template class detail::AdamFamily<T, AdamOptions, false>; \
    X template class detail::AdamFamily<T, AdamWOptions, true>; \
    X template class Adam<T>; \
    X template class AdamW<T>;
EMBER_EXTERN_INSTANCES(EMBER_ADAM_INSTANCES)

}  // namespace ember
