#pragma once
/// \file
/// Stochastic gradient descent with optional momentum, Nesterov momentum and (coupled, L2)
/// weight decay: PyTorch 1.13's torch/optim/sgd.py (_single_tensor_sgd). With
///
///     d = ±g + weight_decay·p                     (− when maximising)
///     b = d                          at the first update (the buffer is a copy of d),
///     b = momentum·b + (1 − dampening)·d          afterwards,
///     p = p − lr·(d + momentum·b)    with Nesterov, else   p = p − lr·b,
/// and without momentum simply p = p − lr·d. The buffer is state "momentum_buffer".
#include "ember/core/instances.hpp"
#include "ember/optim/optimizer.hpp"

namespace ember {

/// SGD's settings, as torch.optim.SGD's arguments.
struct SGDOptions {
    double lr = 1e-3;  ///< PyTorch 1.13 has no default (it is required); 2.x uses 1e-3
    /// Momentum factor; 0 disables momentum.
    double momentum = 0;
    /// Dampening of the gradient in the momentum buffer.
    double dampening = 0;
    /// Coupled (L2) weight decay, added to the gradient.
    double weight_decay = 0;
    /// Nesterov momentum (needs momentum > 0 and dampening = 0).
    bool nesterov = false;
    /// Maximise the objective instead of minimising it.
    bool maximize = false;
};

/// Stochastic gradient descent with optional momentum, as torch.optim.SGD (see the file
/// description).
template <Real T>
class SGD final : public Optimizer<T> {
public:
    /// SGD over `params` (distinct contiguous leaves that require grad).
    explicit SGD(std::vector<Var<T>> params, SGDOptions options = {})
        : Optimizer<T>("SGD", std::move(params), options.lr), opts_(validated(options)) {}

    /// The options, with lr as it is now (a schedule may have changed it).
    SGDOptions options() const {
        SGDOptions o = opts_;
        o.lr = this->lr();
        return o;
    }

    std::vector<std::string> state_keys() const override {
        if (opts_.momentum > 0) return {"momentum_buffer"};
        return {};
    }

private:
    static SGDOptions validated(const SGDOptions& o) {
        detail::check_nonnegative("SGD", "momentum", o.momentum);
        detail::check_nonnegative("SGD", "weight_decay", o.weight_decay);
        EMBER_CHECK(o.dampening == o.dampening, "SGD", "dampening must be a number, got ", o.dampening);
        EMBER_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), "SGD",
                    "nesterov needs momentum > 0 and dampening = 0, got momentum ", o.momentum, " and dampening ",
                    o.dampening);
        return o;
    }

    void update(std::size_t, const Tensor<T>& p, const Tensor<T>& g, ParamState<T>& s) override {
        const double lr = this->lr(), mu = opts_.momentum;
        detail::with_effective_grad(g, p, opts_.maximize, opts_.weight_decay, [&](const auto& d) {
            if (mu == 0) {
                assign(p, p + (-lr) * d);  // param.add_(d_p, alpha=-lr)
                return;
            }
            Tensor<T> buf;
            if (const Tensor<T>* existing = s.find("momentum_buffer")) {
                buf = *existing;
                assign(buf, buf * mu + (1 - opts_.dampening) * d);  // buf.mul_(mu).add_(d_p, alpha=1-dampening)
            } else {
                buf = Tensor<T>::empty(p.shape());  // torch.clone(d_p): no dampening on the first update
                assign(buf, d);
                s.set("momentum_buffer", buf);
            }
            if (opts_.nesterov) assign(p, p + (-lr) * (d + mu * buf));  // d_p.add(buf, alpha=mu)
            else assign(p, p + (-lr) * buf);
        });
    }

    SGDOptions opts_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_SGD_INSTANCES(X, T) \
    X template class SGD<T>;
EMBER_EXTERN_INSTANCES(EMBER_SGD_INSTANCES)

}  // namespace ember
