#pragma once
/// \file
/// The optimiser base classes. An optimiser holds leaf parameters (Vars that require grad)
/// and, per parameter, a step count and named state tensors ("exp_avg", "momentum_buffer",
/// ... with PyTorch's names), created at the parameter's first update. step() updates every
/// parameter that has a gradient, in place, under NoGrad; a parameter whose grad() is
/// undefined is skipped, as in PyTorch (no update, no state, its step count unchanged).
///
/// Update rules follow PyTorch 1.13's single-tensor implementations (torch/optim/*.py)
/// operation by operation: the same operands, scalar factors computed in double as Python
/// does, the same order of operations. Each state tensor and the parameter are rewritten by
/// one fused elementwise pass (ember::assign), so a step allocates nothing once the state
/// exists.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/autodiff/var.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/threading.hpp"

namespace ember {

/// What every optimiser offers independently of its scalar type: its learning rate (which
/// schedules, schedule.hpp, drive), step() and zero_grad(). Not copyable or movable:
/// schedules keep a pointer to it, and a copy would share the state tensors.
class OptimizerBase {
public:
    virtual ~OptimizerBase() = default;
    OptimizerBase(const OptimizerBase&) = delete;
    OptimizerBase& operator=(const OptimizerBase&) = delete;

    /// One update of every parameter that has a gradient.
    virtual void step() = 0;
    /// Clears every parameter's gradient. set_to_none (the default, as in PyTorch 2) leaves
    /// grad() undefined, so the next backward() adopts its gradient buffer without adding;
    /// false fills the existing gradients with zeros (PyTorch 1.13's default).
    virtual void zero_grad(bool set_to_none = true) = 0;

    /// The optimiser's name, e.g.\ "Adam", as error messages use it.
    const char* name() const { return name_; }
    /// The current learning rate.
    double lr() const { return lr_; }
    /// Sets the learning rate (>= 0); schedules call this.
    void set_lr(double lr) {
        check_lr(name_, lr);
        lr_ = lr;
    }

    /// The learning rate schedules start from: the lr when the first schedule was attached
    /// (PyTorch's param_group["initial_lr"], set once by setdefault). A second schedule on
    /// the same optimiser therefore shares the first one's base, as in PyTorch.
    double initial_lr() {
        if (!initial_lr_) initial_lr_ = lr_;
        return *initial_lr_;
    }

protected:
    /// An optimiser called `name` with learning rate `lr`.
    OptimizerBase(const char* name, double lr) : name_(name), lr_(lr) { check_lr(name, lr); }

    /// Throws ember::Error naming `op` unless lr >= 0.
    static void check_lr(const char* op, double lr) {
        EMBER_CHECK(lr >= 0, op, "lr must be >= 0, got ", lr);  // also rejects NaN
    }

private:
    const char* name_;
    double lr_;
    std::optional<double> initial_lr_;
};

/// The state of one parameter: how many updates it has had and its named state tensors, in
/// the order they were created. A checkpoint can save these and restore them (into an
/// optimiser built with the same options and parameters) by assigning `step` and the
/// buffers; a buffer that is absent is created, as zeros or as PyTorch initialises it, at
/// the parameter's next update.
template <Real T>
struct ParamState {
    std::int64_t step = 0;  ///< PyTorch's state["step"] (a count; kept exact as an integer)
    /// The named state tensors, e.g.\ ("exp_avg", ...), in creation order.
    std::vector<std::pair<std::string, Tensor<T>>> buffers;

    /// The buffer called `key`, or null.
    const Tensor<T>* find(std::string_view key) const {
        for (const auto& [k, t] : buffers)
            if (k == key) return &t;
        return nullptr;
    }
    /// The buffer called `key`, or null.
    Tensor<T>* find(std::string_view key) {
        for (auto& [k, t] : buffers)
            if (k == key) return &t;
        return nullptr;
    }
    /// Inserts or replaces a buffer.
    void set(std::string_view key, Tensor<T> value) {
        if (Tensor<T>* t = find(key)) *t = std::move(value);
        else buffers.emplace_back(std::string(key), std::move(value));
    }
};

/// The base of the optimisers over Var<T> parameters: the parameter list, the per-parameter
/// state, step() and zero_grad() (see the file description).
template <Real T>
class Optimizer : public OptimizerBase {
public:
    /// The element type.
    using value_type = T;

    /// The parameters, in the order given.
    const std::vector<Var<T>>& params() const { return params_; }
    /// state()[i] belongs to params()[i].
    std::vector<ParamState<T>>& state() { return state_; }
    /// state()[i] belongs to params()[i].
    const std::vector<ParamState<T>>& state() const { return state_; }
    /// The state tensors step() keeps for every parameter it has updated, e.g. Adam's
    /// "exp_avg" and "exp_avg_sq" (PyTorch's names): what a checkpoint must hold for it.
    virtual std::vector<std::string> state_keys() const = 0;

    void step() override {
        NoGrad no_grad;
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const Tensor<T>& g = params_[i].grad();
            if (!g.defined()) continue;
            const Tensor<T>& p = params_[i].value();
            EMBER_CHECK(g.shape() == p.shape(), name(), "the gradient of parameter ", i, " has shape ",
                        g.shape().str(), " but the parameter has shape ", p.shape().str());
            ParamState<T>& s = state_[i];
            // State restored from a checkpoint must fit; checked before anything changes.
            for (const auto& [key, t] : s.buffers) check_state_shape(i, key, t);
            ++s.step;  // PyTorch increments before using it (Adam's bias correction)
            update(i, p, g, s);
        }
    }

    void zero_grad(bool set_to_none = true) override {
        for (const Var<T>& p : params_) {
            const Tensor<T>& g = p.grad();
            if (!g.defined()) continue;
            if (set_to_none) p.zero_grad();
            else if (g.is_contiguous()) g.fill(T(0));
            else p.set_grad(Tensor<T>::zeros(g.shape()));
        }
    }

protected:
    /// An optimiser called `name` over `params` (distinct contiguous leaves that require grad).
    Optimizer(const char* name, std::vector<Var<T>> params, double lr)
        : OptimizerBase(name, lr), params_(std::move(params)), state_(params_.size()) {
        EMBER_CHECK(!params_.empty(), name, "got an empty parameter list");
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const Var<T>& p = params_[i];
            EMBER_CHECK(p.defined(), name, "parameter ", i, " is an undefined Var");
            EMBER_CHECK(p.is_leaf(), name, "parameter ", i,
                        " is not a leaf (it was computed from other Vars); optimise the leaves it came from");
            EMBER_CHECK(p.requires_grad(), name, "parameter ", i,
                        " does not require grad, so it would never be updated; construct it as Var(t, true)");
            EMBER_CHECK(p.value().is_contiguous(), name, "parameter ", i, " of shape ", p.shape().str(),
                        " is a non-contiguous view; it must own a contiguous buffer to be updated in place");
            for (std::size_t j = 0; j < i; ++j)
                EMBER_CHECK(params_[j].impl() != p.impl(), name, "parameter ", i, " is the same Var as parameter ", j,
                            "; each parameter may appear once");
        }
    }

    /// Updates parameter `index` (value p, gradient g, state s, s.step already counting this
    /// update) in place.
    virtual void update(std::size_t index, const Tensor<T>& p, const Tensor<T>& g, ParamState<T>& s) = 0;

    /// The state tensor `key` of parameter `index`: the existing one (step() has checked its
    /// shape) or a new one of zeros. Returned by value: a Tensor is a handle to the buffer.
    Tensor<T> zeros_state(std::size_t index, ParamState<T>& s, std::string_view key) {
        if (const Tensor<T>* t = s.find(key)) return *t;
        Tensor<T> t = Tensor<T>::zeros(params_[index].value().shape());
        s.set(key, t);
        return t;
    }
    /// Throws ember::Error unless state tensor `t` fits parameter `index` (same shape, contiguous).
    void check_state_shape(std::size_t index, std::string_view key, const Tensor<T>& t) const {
        const Tensor<T>& p = params_[index].value();
        EMBER_CHECK(t.defined() && t.shape() == p.shape() && t.is_contiguous(), name(), "state '", key,
                    "' of parameter ", index, " has shape ", t.defined() ? t.shape().str() : std::string("(undefined)"),
                    " but the parameter has shape ", p.shape().str(), " (a state restored for other parameters?)");
    }

private:
    std::vector<Var<T>> params_;
    std::vector<ParamState<T>> state_;
};

namespace detail {
// PyTorch's effective gradient d_p: the gradient, negated when maximising, plus
// weight_decay·p when weight decay is coupled (L2), formed as `grad.add(param, alpha=wd)`.
// Calls f with it as an expression (or the gradient itself), so that it is recomputed
// inside each fused pass rather than stored.
template <Real T, class F>
void with_effective_grad(const Tensor<T>& g, const Tensor<T>& p, bool maximize, double weight_decay, F&& f) {
    if (weight_decay != 0) {
        if (maximize) f(-g + weight_decay * p);
        else f(g + weight_decay * p);
    } else {
        if (maximize) f(-g);
        else f(g);
    }
}

// Runs body(blocks...) on matching blocks of a few thousand elements of the given tensors
// (all of one size), blocks in parallel. An update written as several elementwise passes
// then reads and writes each block while it is in cache, so it costs about one pass over
// memory instead of several, and every element still sees the same operations in the
// same order. Tensors that are not contiguous are handled in one piece.
template <Real T, class Body, class... Ts>
void blockwise(Body&& body, const Tensor<T>& first, const Ts&... rest) {
    const Index n = first.numel();
    const bool contiguous = first.is_contiguous() && (rest.is_contiguous() && ...);
    constexpr Index kBlock = 8192;  // 32 KB of floats per tensor: five tensors fit in L2
    if (!contiguous || n <= kBlock) {
        body(first, rest...);
        return;
    }
    const Shape flat{n};
    const Index blocks = (n + kBlock - 1) / kBlock;
    parallel_for(blocks, [&](Index b) {
        const Index lo = b * kBlock, hi = std::min(n, lo + kBlock);
        body(first.reshape(flat).slice(0, lo, hi), rest.reshape(flat).slice(0, lo, hi)...);
    });
}

// Message fragments for option checks: "Adam: beta1 must be in [0,1), got 1.5".
inline void check_nonnegative(const char* op, const char* what, double v) {
    EMBER_CHECK(v >= 0, op, what, " must be >= 0, got ", v);  // also rejects NaN
}
}  // namespace detail

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_OPTIMIZER_INSTANCES(X, T) \
    X template class Optimizer<T>;
EMBER_EXTERN_INSTANCES(EMBER_OPTIMIZER_INSTANCES)

}  // namespace ember
