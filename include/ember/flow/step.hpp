#pragma once
/// \file
/// The interface of one invertible step of a normalising flow (docs/math.md §6).
///
/// A flow maps data x to a latent z = f(x) = f_K(...f_1(x)) whose density is simple; by the
/// change of variables
///
///     log p_X(x) = log p_Z(f(x)) + Σ_k log|det ∂f_k/∂h_{k-1}|,   h_0 = x, h_k = f_k(h_{k-1}),
/// so each step must give its output AND the log-determinant of its Jacobian, per sample:
///
///     forward_and_logdet(x [N, ...]) -> { y = f(x) [N, ...], logdet [N] }
///     inverse(y) = f⁻¹(y)
/// Samples never interact (no step mixes the batch), so the Jacobian of the whole batch is
/// block-diagonal and logdet[i] = log|det ∂y_i/∂x_i|. The one exception is ActNorm's
/// data-dependent initialisation, which reads a batch once and then fixes its parameters.
///
/// Steps are nn::Modules: parameters(), state_dict(), train()/eval() and checkpoints work as
/// for any layer. Module::forward(x) returns y alone, so a step also fits in a Sequential.
/// Both directions are built from ember's differentiable ops, so log p(x), samples and
/// their gradients are all differentiable (to second order).
#include <array>
#include <span>
#include <string>

#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/broadcast.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember::flow {

/// A step's output and the log-determinant of its Jacobian, per sample.
template <Real T>
struct FlowOutput {
    Var<T> y;       ///< f(x), [N, ...]
    Var<T> logdet;  ///< [N]: log|det ∂f(x_i)/∂x_i| of each sample
};

/// One invertible step of a normalising flow: its output and log-determinant (see the file
/// description).
template <Real T>
class FlowStep : public nn::Module<T> {
public:
    /// y = f(x) for x [N, ...] and logdet [N], log|det ∂y_i/∂x_i| of each sample.
    virtual FlowOutput<T> forward_and_logdet(const Var<T>& x) = 0;
    /// f⁻¹(y).
    virtual Var<T> inverse(const Var<T>& y) = 0;
    /// The per-sample shape of f(x) for a per-sample input shape (Squeeze changes it).
    virtual Shape output_shape(const Shape& input) const { return input; }

    /// f(x) alone, so that a step fits in a Sequential.
    Var<T> forward(const Var<T>& x) override { return forward_and_logdet(x).y; }
};

namespace detail {

// "[N,4,8,8]": an expected input shape with a free batch size, for error messages.
inline std::string batch_of(const Shape& event) {
    std::string s = "[N";
    for (Index d : event) {  // appended piece by piece: g++ 12 warns (falsely) on "," + string
        s += ',';
        s += std::to_string(d);
    }
    return s + "]";
}

// Shape `event` with the batch size n in front.
inline Shape with_batch(Index n, const Shape& event) {
    std::array<Index, kMaxRank> d{};
    EMBER_CHECK(event.rank() < kMaxRank, "flow", "per-sample shape ", event.str(), " leaves no room for a batch axis");
    d[0] = n;
    for (int i = 0; i < event.rank(); ++i) d[static_cast<std::size_t>(i + 1)] = event[i];
    return Shape(std::span<const Index>(d.data(), static_cast<std::size_t>(event.rank() + 1)));
}

// The per-sample shape of x [N, ...].
inline Shape event_of(const Shape& x) {
    return Shape(std::span<const Index>(x.begin() + 1, static_cast<std::size_t>(x.rank() - 1)));
}

// x must be [N, event...] for some N.
inline void check_event_shape(const char* op, const Shape& x, const Shape& event) {
    EMBER_CHECK(x.rank() == event.rank() + 1 && event_of(x) == event, op, "expected input ", batch_of(event), ", got ",
                x.str());
}

// Σ over every axis but the batch axis: [N, ...] -> [N].
template <Real T>
Var<T> sum_per_sample(const Var<T>& v) {
    return sum(reshape(v, Shape{v.dim(0), -1}), 1);
}

// The log-determinant of a step whose Jacobian is the same for every sample (ActNorm, the
// invertible linear maps): the rank-0 `total` repeated for the n samples.
template <Real T>
Var<T> same_for_each_sample(const Var<T>& total, Index n) {
    return expand(total, Shape{n});
}

// A volume-preserving step's log-determinant: zeros [n].
template <Real T>
Var<T> zero_logdet(Index n) {
    return Var<T>(Tensor<T>::zeros(Shape{n}));
}

}  // namespace detail

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_FLOW_STEP_INSTANCES(X, T) \
    X template class FlowStep<T>;
EMBER_EXTERN_INSTANCES(EMBER_FLOW_STEP_INSTANCES)

}  // namespace ember::flow
