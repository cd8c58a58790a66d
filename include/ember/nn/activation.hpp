#pragma once
/// \file
/// Activation layers: parameter-free elementwise maps, each one fused expression node.
#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"

namespace ember::nn {

/// An activation whose map is the stateless functor F (F::name, F::apply).
template <Real T, class F>
class Activation : public Module<T> {
public:
    /// The activation with a default-constructed map.
    Activation() = default;
    /// The activation with map `f`.
    explicit Activation(F f) : f_(f) {}
    /// The map applied to `x`, as one fused expression node.
    Var<T> forward(const Var<T>& x) override { return Var<T>(f_(x)); }
    /// The map's description, e.g.\ "ReLU()".
    std::string describe() const override { return f_.describe(); }

private:
    F f_;
};

/// The maps of the activation layers, as stateless function objects: `operator()` applies the
/// elementwise function, `describe()` names the layer as PyTorch prints it.
namespace act {
/// max(x, 0).
struct Relu {
    /// The map of `x` (a Var, Tensor or expression), as an expression.
    template <class X> auto operator()(const X& x) const { return relu(x); }
    /// The layer as PyTorch prints it.
    std::string describe() const { return "ReLU()"; }
};
/// x for x > 0, slope·x otherwise.
struct LeakyRelu {
    /// The negative slope.
    double slope = 0.01;
    /// The map of `x` (a Var, Tensor or expression), as an expression.
    template <class X> auto operator()(const X& x) const { return leaky_relu(x, slope); }
    /// The layer as PyTorch prints it.
    std::string describe() const { return detail::call_string("LeakyReLU", slope); }
};
/// x for x > 0, alpha·(e^x - 1) otherwise.
struct Elu {
    /// The scale of the negative part.
    double alpha = 1.0;
    /// The map of `x` (a Var, Tensor or expression), as an expression.
    template <class X> auto operator()(const X& x) const { return elu(x, alpha); }
    /// The layer as PyTorch prints it.
    std::string describe() const { return detail::call_string("ELU", alpha); }
};
/// tanh(x).
struct Tanh {
    /// The map of `x` (a Var, Tensor or expression), as an expression.
    template <class X> auto operator()(const X& x) const { return tanh(x); }
    /// The layer as PyTorch prints it.
    std::string describe() const { return "Tanh()"; }
};
/// The logistic sigmoid.
struct Sigmoid {
    /// The map of `x` (a Var, Tensor or expression), as an expression.
    template <class X> auto operator()(const X& x) const { return sigmoid(x); }
    /// The layer as PyTorch prints it.
    std::string describe() const { return "Sigmoid()"; }
};
/// log(1 + e^x).
struct Softplus {
    /// The map of `x` (a Var, Tensor or expression), as an expression.
    template <class X> auto operator()(const X& x) const { return softplus(x); }
    /// The layer as PyTorch prints it.
    std::string describe() const { return "Softplus()"; }
};
/// x·sigmoid(x), also called swish.
struct Silu {
    /// The map of `x` (a Var, Tensor or expression), as an expression.
    template <class X> auto operator()(const X& x) const { return x * sigmoid(x); }
    /// The layer as PyTorch prints it.
    std::string describe() const { return "SiLU()"; }
};
}  // namespace act

/// max(x, 0), as torch.nn.ReLU.
template <Real T> using ReLU = Activation<T, act::Relu>;
/// tanh(x), as torch.nn.Tanh.
template <Real T> using Tanh = Activation<T, act::Tanh>;
/// The logistic sigmoid, as torch.nn.Sigmoid.
template <Real T> using Sigmoid = Activation<T, act::Sigmoid>;
/// log(1 + e^x), as torch.nn.Softplus.
template <Real T> using Softplus = Activation<T, act::Softplus>;
/// x·sigmoid(x), as torch.nn.SiLU.
template <Real T> using SiLU = Activation<T, act::Silu>;

/// x for x > 0, negative_slope·x otherwise, as torch.nn.LeakyReLU.
template <Real T>
class LeakyReLU : public Activation<T, act::LeakyRelu> {
public:
    /// A LeakyReLU with the given negative slope.
    explicit LeakyReLU(double negative_slope = 0.01) : Activation<T, act::LeakyRelu>(act::LeakyRelu{negative_slope}) {}
};
/// x for x > 0, alpha·(e^x - 1) otherwise, as torch.nn.ELU.
template <Real T>
class ELU : public Activation<T, act::Elu> {
public:
    /// An ELU with scale `alpha`.
    explicit ELU(double alpha = 1.0) : Activation<T, act::Elu>(act::Elu{alpha}) {}
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_ACTIVATION_INSTANCES(X, T) \
    X template class Activation<T, act::Relu>; \
    X template class Activation<T, act::LeakyRelu>; \
    X template class Activation<T, act::Elu>; \
    X template class Activation<T, act::Tanh>; \
    X template class Activation<T, act::Sigmoid>; \
    X template class Activation<T, act::Softplus>; \
    X template class Activation<T, act::Silu>; \
    X template class LeakyReLU<T>; \
    X template class ELU<T>;
EMBER_EXTERN_INSTANCES(EMBER_ACTIVATION_INSTANCES)

}  // namespace ember::nn
