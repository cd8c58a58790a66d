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
    Activation() = default;
    explicit Activation(F f) : f_(f) {}
    Var<T> forward(const Var<T>& x) override { return Var<T>(f_(x)); }
    std::string describe() const override { return f_.describe(); }

private:
    F f_;
};

namespace act {
struct Relu {
    template <class X> auto operator()(const X& x) const { return relu(x); }
    std::string describe() const { return "ReLU()"; }
};
struct LeakyRelu {
    double slope = 0.01;
    template <class X> auto operator()(const X& x) const { return leaky_relu(x, slope); }
    std::string describe() const { return detail::call_string("LeakyReLU", slope); }
};
struct Elu {
    double alpha = 1.0;
    template <class X> auto operator()(const X& x) const { return elu(x, alpha); }
    std::string describe() const { return detail::call_string("ELU", alpha); }
};
struct Tanh {
    template <class X> auto operator()(const X& x) const { return tanh(x); }
    std::string describe() const { return "Tanh()"; }
};
struct Sigmoid {
    template <class X> auto operator()(const X& x) const { return sigmoid(x); }
    std::string describe() const { return "Sigmoid()"; }
};
struct Softplus {
    template <class X> auto operator()(const X& x) const { return softplus(x); }
    std::string describe() const { return "Softplus()"; }
};
/// x·sigmoid(x), also called swish.
struct Silu {
    template <class X> auto operator()(const X& x) const { return x * sigmoid(x); }
    std::string describe() const { return "SiLU()"; }
};
}  // namespace act

template <Real T> using ReLU = Activation<T, act::Relu>;
template <Real T> using Tanh = Activation<T, act::Tanh>;
template <Real T> using Sigmoid = Activation<T, act::Sigmoid>;
template <Real T> using Softplus = Activation<T, act::Softplus>;
template <Real T> using SiLU = Activation<T, act::Silu>;

template <Real T>
class LeakyReLU : public Activation<T, act::LeakyRelu> {
public:
    explicit LeakyReLU(double negative_slope = 0.01)
        : Activation<T, act::LeakyRelu>(act::LeakyRelu{negative_slope}), slope_(negative_slope) {}
    std::optional<double> leaky_relu_slope() const override { return slope_; }

private:
    double slope_;
};
template <Real T>
class ELU : public Activation<T, act::Elu> {
public:
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
