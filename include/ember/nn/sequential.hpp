#pragma once
/// \file
/// Sequential: applies its children in order. Children are named "0", "1", ... as in
/// PyTorch, so parameters are "0.weight", "2.bias", ...
///
///     nn::Sequential<float> D;
///     D.add<nn::Linear>(784, 512, gen);
///     D.add<nn::LeakyReLU>(0.2);
///     D.add<nn::Linear>(512, 1, gen);
///     Var<float> logits = D(x);
#include <memory>
#include <string>

#include "ember/nn/module.hpp"

namespace ember::nn {

/// A chain of modules applied in order, as torch.nn.Sequential (see the file description).
template <Real T>
class Sequential : public Module<T> {
public:
    Sequential() = default;

    /// Appends a module built in place from `args`; returns a reference to it.
    template <template <Real> class M, class... A>
    M<T>& add(A&&... args) {
        return *add(std::make_shared<M<T>>(std::forward<A>(args)...));
    }
    /// Appends an existing module (shared: the caller may keep a handle to it).
    template <class M>
    std::shared_ptr<M> add(std::shared_ptr<M> m) {
        layers_.push_back(m);
        return this->register_module(std::to_string(layers_.size() - 1), std::move(m));
    }

    /// Number of modules.
    std::size_t size() const { return layers_.size(); }
    /// Module `i`, in the order they were added.
    Module<T>& operator[](std::size_t i) const {
        EMBER_CHECK(i < layers_.size(), "Sequential", "index ", i, " out of range for ", layers_.size(), " layers");
        return *layers_[i];
    }

    /// The modules applied in order.
    Var<T> forward(const Var<T>& x) override {
        Var<T> h = x;
        for (const auto& layer : layers_) h = layer->forward(h);
        return h;
    }
    std::string describe() const override { return "Sequential"; }

private:
    std::vector<std::shared_ptr<Module<T>>> layers_;
};

}  // namespace ember::nn
