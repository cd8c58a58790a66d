#pragma once
/// \file
/// The base of every layer: a Module owns named parameters (Vars that require grad), named
/// buffers (tensors that are state but not trained, such as BatchNorm's running mean) and
/// named child modules, and knows whether it is in training or evaluation mode.
///
/// Names compose with dots, as in PyTorch, so that optimisers, checkpoints and people can
/// find a tensor: a Sequential registered as "disc" whose first child is a Linear gives
/// "disc.0.weight" and "disc.0.bias". A checkpoint written from these names can be loaded
/// by a PyTorch model with the same structure, and the other way round.
///
/// Modules are composed at run time (type-erased behind shared_ptr<Module<T>>), not as one
/// nested template type: a network's type stays short, errors stay readable and a network
/// compiles in the time of its layers.
///
/// Parameters and buffers are handles (Var, Tensor): a layer keeps one in a member for its
/// forward and the registry keeps another to the same storage. Anything that changes them
/// from outside (optimisers, load_state_dict) writes into that storage in place, so the two
/// never diverge.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ember/autodiff/engine.hpp"
#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"

namespace ember::nn {

/// The base of every layer: named parameters, buffers and child modules, and the training
/// mode (see the file description).
template <Real T>
class Module {
public:
    /// The element type.
    using value_type = T;

    Module() = default;
    virtual ~Module() = default;
    /// Copying would silently share parameters; moving keeps the handles.
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;
    /// Moves the handles of the parameters, buffers and children.
    Module(Module&&) noexcept = default;
    /// Moves the handles of the parameters, buffers and children.
    Module& operator=(Module&&) noexcept = default;

    /// The layer's output for input `x`, recorded on the graph.
    virtual Var<T> forward(const Var<T>& x) = 0;
    /// forward(x).
    Var<T> operator()(const Var<T>& x) { return forward(x); }

    /// A one-line description with the constructor's arguments, e.g.\ "Linear(784, 512)".
    virtual std::string describe() const = 0;

    /// Training mode (the default) or evaluation mode, for this module and all below it.
    /// It changes what BatchNorm, Dropout and spectral normalisation do.
    void train(bool on = true) {
        training_ = on;
        for (auto& [name, child] : children_) child->train(on);
    }
    /// train(false): evaluation mode for this module and all below it.
    void eval() { train(false); }
    /// Whether the module is in training mode.
    bool is_training() const { return training_; }

    /// forward(x) as samples and test metrics need it: no graph, evaluation mode (BatchNorm's
    /// running statistics, no dropout), then the module's own mode again, even on an error.
    Tensor<T> infer(const Tensor<T>& x) {
        struct Restore {
            Module& m;
            bool training;
            ~Restore() { m.train(training); }
        } restore{*this, training_};
        NoGrad no_grad;
        eval();
        return forward(Var<T>(x)).value();
    }

    /// Parameters in registration order, depth first, with dotted names.
    std::vector<std::pair<std::string, Var<T>>> named_parameters() const {
        std::vector<std::pair<std::string, Var<T>>> out;
        visit("", [&](const std::string& prefix, const Module& m) {
            for (const auto& [name, p] : m.params_) out.emplace_back(prefix + name, p);
        });
        return out;
    }
    /// The parameters of named_parameters(), without their names.
    std::vector<Var<T>> parameters() const {
        std::vector<Var<T>> out;
        for (auto& [name, p] : named_parameters()) out.push_back(p);
        return out;
    }
    /// Buffers in registration order, depth first, with dotted names.
    std::vector<std::pair<std::string, Tensor<T>>> named_buffers() const {
        std::vector<std::pair<std::string, Tensor<T>>> out;
        visit("", [&](const std::string& prefix, const Module& m) {
            for (const auto& [name, b] : m.buffers_) out.emplace_back(prefix + name, b);
        });
        return out;
    }
    /// Everything a checkpoint needs to rebuild this module: parameter values, then buffers.
    std::vector<std::pair<std::string, Tensor<T>>> state_dict() const {
        std::vector<std::pair<std::string, Tensor<T>>> out;
        for (auto& [name, p] : named_parameters()) out.emplace_back(name, p.value());
        for (auto& nb : named_buffers()) out.push_back(std::move(nb));
        return out;
    }

    /// Copies `state` (tensors by dotted name, e.g.\ a loaded safetensors file) into the
    /// parameters and buffers, in place. Names are looked up under `prefix` (so one file
    /// can hold a generator under "gen." and a critic under "disc."). Every shape is
    /// checked before anything is written. With strict, a missing parameter or buffer is
    /// an error, and so is a tensor under `prefix` that this module does not have.
    void load_state_dict(const std::map<std::string, Tensor<T>>& state, const std::string& prefix = "",
                         bool strict = true) {
        const auto own = state_dict();
        std::vector<std::string> missing;
        std::vector<std::pair<Tensor<T>, Tensor<T>>> copies;  // (destination, source)
        for (const auto& [name, dst] : own) {
            const auto it = state.find(prefix + name);
            if (it == state.end()) {
                missing.push_back(prefix + name);
                continue;
            }
            EMBER_CHECK(it->second.shape() == dst.shape(), "load_state_dict", "'", prefix + name, "' has shape ",
                        it->second.shape().str(), " in the checkpoint but ", dst.shape().str(), " in the model");
            copies.emplace_back(dst, it->second);
        }
        if (strict) {
            EMBER_CHECK(missing.empty(), "load_state_dict", "the checkpoint lacks ", join(missing));
            std::set<std::string> names;
            for (const auto& [name, t] : own) names.insert(prefix + name);
            std::vector<std::string> unexpected;
            for (const auto& [name, t] : state)
                if (name.starts_with(prefix) && !names.count(name)) unexpected.push_back(name);
            EMBER_CHECK(unexpected.empty(), "load_state_dict", "the model has no ", join(unexpected));
        }
        for (auto& [dst, src] : copies) dst.copy_from(src.contiguous());
    }

    /// Clears the gradients of all parameters (they become undefined).
    void zero_grad() {
        for (auto& [name, p] : named_parameters()) p.zero_grad();
    }
    /// Freezes (false) or unfreezes every parameter, e.g.\ a critic while its generator trains.
    void requires_grad(bool on) {
        for (auto& [name, p] : named_parameters()) p.set_requires_grad(on);
    }
    /// Number of parameter elements (all parameters, frozen or not).
    Index parameter_count() const {
        Index n = 0;
        for (auto& [name, p] : named_parameters()) n += p.numel();
        return n;
    }

    /// The module tree, one line per module, with parameter counts: what print(model) shows.
    std::string summary() const {
        std::ostringstream os;
        summary_into(os, "", 0);
        os << "parameters: " << parameter_count() << "\n";
        return os.str();
    }

    /// Calls f(prefix, module) for this module and every module below it, depth first.
    void visit(const std::string& prefix, const std::function<void(const std::string&, const Module&)>& f) const {
        f(prefix, *this);
        for (const auto& [name, child] : children_) child->visit(prefix + name + ".", f);
    }
    /// Calls f(module) for this module and every module below it, depth first, with write access.
    void visit_mut(const std::function<void(Module&)>& f) {
        f(*this);
        for (auto& [name, child] : children_) child->visit_mut(f);
    }
    /// The direct children with their names, in registration order.
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

protected:
    /// A new parameter `name` holding `value`; the returned handle shares its storage.
    Var<T> register_parameter(std::string name, Tensor<T> value) {
        check_new_name(name);
        Var<T> p(std::move(value), true);
        params_.emplace_back(std::move(name), p);
        return p;
    }
    /// Registers an existing leaf Var as parameter `name` (a wrapper such as SpectralNorm
    /// adopts the parameters of the layer it wraps, under PyTorch's names).
    Var<T> register_parameter(std::string name, Var<T> p) {
        check_new_name(name);
        EMBER_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "Module::register",
                    "parameter '", name, "' must be a leaf Var that requires grad");
        params_.emplace_back(std::move(name), p);
        return p;
    }
    /// A new buffer `name` holding `value`; the returned handle shares its storage.
    Tensor<T> register_buffer(std::string name, Tensor<T> value) {
        check_new_name(name);
        buffers_.emplace_back(std::move(name), value);
        return value;
    }
    /// Registers `m` as child module `name` (it takes this module's training mode); returns it.
    template <class M>
    std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
        EMBER_CHECK(m != nullptr, describe().c_str(), "child module '", name, "' is null");
        check_new_name(name);
        m->train(training_);
        children_.emplace_back(std::move(name), m);
        return m;
    }

private:
    void check_new_name(const std::string& name) const {
        EMBER_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module::register",
                    "names must be non-empty and contain no '.', got '", name, "'");
        auto taken = [&](const auto& list) {
            return std::any_of(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
        };
        EMBER_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "Module::register", "'", name,
                    "' is already registered in ", describe());
    }
    void summary_into(std::ostringstream& os, const std::string& name, int depth) const {
        Index own = 0;
        for (const auto& [n, p] : params_) own += p.numel();
        os << std::string(static_cast<std::size_t>(2 * depth), ' ') << (name.empty() ? "" : "(" + name + "): ")
           << describe();
        if (own) os << "  [" << own << " parameters]";
        os << "\n";
        for (const auto& [n, child] : children_) child->summary_into(os, n, depth + 1);
    }
    static std::string join(const std::vector<std::string>& names) {
        std::string s;
        for (std::size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", '" : "'") + names[i] + "'";
        if (names.size() > 8) s += " and " + std::to_string(names.size() - 8) + " more";
        return s;
    }

    std::vector<std::pair<std::string, Var<T>>> params_;
    std::vector<std::pair<std::string, Tensor<T>>> buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
    bool training_ = true;
};

namespace detail {
// "Linear(784, 512)"-style descriptions.
template <class... A>
std::string call_string(const char* name, const A&... args) {
    std::ostringstream os;
    os << name << "(";
    int i = 0;
    ((os << (i++ ? ", " : "") << args), ...);
    os << ")";
    return os.str();
}
}  // namespace detail

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_MODULE_INSTANCES(X, T) \
    X template class Module<T>;
EMBER_EXTERN_INSTANCES(EMBER_MODULE_INSTANCES)

}  // namespace ember::nn
