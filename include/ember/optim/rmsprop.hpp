#pragma once
/// \file
/// RMSprop: PyTorch 1.13's torch/optim/rmsprop.py (_single_tensor_rmsprop).
///
///     d   = ±g + weight_decay·p
///     s   = α·s + (1 − α)·d·d                               state "square_avg"
///     a   = α·a + (1 − α)·d       (centered only)           state "grad_avg"
///     avg = sqrt(s − a·a) + eps   (centered)   or   sqrt(s) + eps
///     b   = momentum·b + d / avg  (momentum > 0)            state "momentum_buffer" (starts at 0)
///     p   = p − lr·b              (momentum > 0)   or   p = p − lr·d / avg
/// eps is added outside the square root, as in PyTorch (TensorFlow adds it inside).
#include "ember/core/instances.hpp"
#include "ember/optim/optimizer.hpp"

namespace ember {

/// RMSprop's settings, as torch.optim.RMSprop's arguments.
struct RMSpropOptions {
    /// Learning rate.
    double lr = 1e-2;
    double alpha = 0.99;  ///< smoothing constant of the running averages
    /// Added to the denominator, outside the square root.
    double eps = 1e-8;
    /// Coupled (L2) weight decay, added to the gradient.
    double weight_decay = 0;
    /// Momentum factor; 0 disables momentum.
    double momentum = 0;
    bool centered = false;  ///< normalise by an estimate of the gradient's variance
    /// Maximise the objective instead of minimising it.
    bool maximize = false;
};

/// RMSprop, as torch.optim.RMSprop (see the file description).
template <Real T>
class RMSprop final : public Optimizer<T> {
public:
    /// RMSprop over `params` (distinct contiguous leaves that require grad).
    explicit RMSprop(std::vector<Var<T>> params, RMSpropOptions options = {})
        : Optimizer<T>("RMSprop", std::move(params), options.lr), opts_(validated(options)) {}

    /// The options, with lr as it is now (a schedule may have changed it).
    RMSpropOptions options() const {
        RMSpropOptions o = opts_;
        o.lr = this->lr();
        return o;
    }

    std::vector<std::string> state_keys() const override {
        std::vector<std::string> keys = {"square_avg"};
        if (opts_.centered) keys.push_back("grad_avg");
        if (opts_.momentum > 0) keys.push_back("momentum_buffer");
        return keys;
    }

private:
    static RMSpropOptions validated(const RMSpropOptions& o) {
        // PyTorch only asks alpha >= 0; above 1 the running average gets a negative weight
        // and the square root turns NaN, so we refuse it.
        EMBER_CHECK(o.alpha >= 0 && o.alpha <= 1, "RMSprop", "alpha must be in [0,1], got ", o.alpha);
        detail::check_nonnegative("RMSprop", "eps", o.eps);
        detail::check_nonnegative("RMSprop", "weight_decay", o.weight_decay);
        detail::check_nonnegative("RMSprop", "momentum", o.momentum);
        return o;
    }

    void update(std::size_t index, const Tensor<T>& p, const Tensor<T>& g, ParamState<T>& s) override {
        const double lr = this->lr(), alpha = opts_.alpha, eps = opts_.eps, mu = opts_.momentum;
        const Tensor<T> square_avg = this->zeros_state(index, s, "square_avg");
        const Tensor<T> grad_avg = opts_.centered ? this->zeros_state(index, s, "grad_avg") : Tensor<T>();
        const Tensor<T> buf = mu > 0 ? this->zeros_state(index, s, "momentum_buffer") : Tensor<T>();

        detail::with_effective_grad(g, p, opts_.maximize, opts_.weight_decay, [&](const auto& d) {
            assign(square_avg, square_avg * alpha + (1 - alpha) * d * d);  // .mul_(alpha).addcmul_(g, g, value=1-alpha)
            // The parameter's step given avg (an expression, recomputed inside the final pass).
            auto finish = [&](const auto& avg) {
                if (mu > 0) {
                    assign(buf, buf * mu + d / avg);  // buf.mul_(momentum).addcdiv_(grad, avg)
                    assign(p, p + (-lr) * buf);       // param.add_(buf, alpha=-lr)
                } else {
                    assign(p, p + (-lr) * d / avg);  // param.addcdiv_(grad, avg, value=-lr)
                }
            };
            if (opts_.centered) {
                assign(grad_avg, grad_avg * alpha + (1 - alpha) * d);  // .mul_(alpha).add_(g, alpha=1-alpha)
                // square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_().add_(eps); x + (−a)·a ≡ x − a·a exactly
                finish(sqrt(square_avg - grad_avg * grad_avg) + eps);
            } else {
                finish(sqrt(square_avg) + eps);
            }
        });
    }

    RMSpropOptions opts_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_RMSPROP_INSTANCES(X, T) \
    X template class RMSprop<T>;
EMBER_EXTERN_INSTANCES(EMBER_RMSPROP_INSTANCES)

}  // namespace ember
