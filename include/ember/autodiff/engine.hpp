#pragma once
/// \file
/// The backward walk. Nodes are ordered by an iterative depth-first search (no recursion,
/// so a 100k-node chain is fine), then visited in reverse topological order; each node's
/// gradient is the sum over all its consumers before its own backward runs. In anomaly
/// mode (anomaly.hpp) the gradients each backward returns are checked for NaN/Inf.
#include <atomic>
#include <span>
#include <string>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"

namespace ember {

namespace detail {

// Walk ids are unique across threads, so a mark left on a shared node by another thread's
// walk never passes for one of this walk.
inline std::uint64_t next_walk_id() {
    static std::atomic<std::uint64_t> id{0};
    return ++id;
}

// Post-order (inputs before consumers) of everything reachable from `roots` that requires
// grad; marks `needed` on nodes from which a target can be reached. Leaves that are not
// targets are neither visited nor marked: grad() with respect to some inputs never writes
// to the network's parameters, so walks on separate graphs that share parameters can run
// on separate threads (sample::energy_and_grad with parallel chains).
template <Real T, class IsTarget>
std::vector<VarImpl<T>*> topological_order(const std::vector<VarImpl<T>*>& roots, std::uint64_t walk,
                                           IsTarget&& is_target) {
    std::vector<VarImpl<T>*> order;
    std::vector<std::pair<VarImpl<T>*, std::size_t>> stack;
    for (VarImpl<T>* r : roots) {
        if (r->walk == walk || !r->requires_grad) continue;
        r->walk = walk;
        r->needed = false;
        stack.push_back({r, 0});
        while (!stack.empty()) {
            auto& [v, next] = stack.back();
            static const detail::InputList<ImplPtr<T>> no_inputs;
            const auto& ins = v->fn ? v->fn->inputs : no_inputs;
            if (v->fn && v->fn->released)
                fail("backward", "the graph through '", v->fn->name(),
                     "' was already freed by an earlier backward; pass retain_graph = true to the first one");
            if (next < ins.size()) {
                VarImpl<T>* in = ins[next++].get();
                if (in->walk != walk && in->requires_grad && (in->fn || is_target(in))) {
                    in->walk = walk;
                    in->needed = false;
                    stack.push_back({in, 0});
                }
                continue;
            }
            bool needed = is_target(v);
            for (std::size_t i = 0; i < ins.size(); ++i)
                needed = needed || (ins[i]->walk == walk && ins[i]->requires_grad && ins[i]->needed);
            v->needed = needed;
            order.push_back(v);
            stack.pop_back();
        }
    }
    return order;
}

template <Real T>
void accumulate_pending(VarImpl<T>* v, Var<T> g, bool create_graph) {
    if (!v->pending) {
        v->pending = g.impl();
        return;
    }
    Var<T> p(v->pending);
    if (!create_graph && p.value().unique() && p.value().is_contiguous() && !p.requires_grad()) {
        Tensor<T> acc = p.value();
        acc.copy_from(Tensor<T>(acc + g.value()));
        return;
    }
    v->pending = Var<T>(p + g).impl();
}

// Anomaly mode: runs v's backward and checks the gradients it returns (anomaly.hpp). A
// non-finite gradient is an error when the node names an op inside it that produced it
// (fused expressions), or when the incoming gradient and the forward values are finite.
template <Real T>
[[gnu::noinline, gnu::cold]] std::vector<Var<T>> anomaly_checked_backward(VarImpl<T>& v, const Var<T>& g, std::span<const bool> need) {
    Node<T>& fn = *v.fn;
    std::vector<Var<T>> grads;
    {
        AnomalyBackwardScope scope(fn.name());
        grads = fn.backward(g, need);
    }
    for (std::size_t i = 0; i < grads.size() && i < need.size(); ++i) {
        if (!need[i] || !grads[i].defined()) continue;
        const Tensor<T>& gi = grads[i].value();
        const Index k = first_non_finite(gi);
        if (k < 0) continue;
        std::string op = fn.name(), inner;
        const bool explained = fn.anomaly_explain_backward(g.value(), op, inner);
        if (!explained && !(all_finite(g.value()) && all_finite(v.value) && fn.anomaly_inputs_finite()))
            continue;  // propagates a non-finite leaf
        std::string shapes;
        for (std::size_t j = 0; j < fn.inputs.size(); ++j) shapes += (j ? ", " : "") + fn.inputs[j]->value.shape().str();
        fail("detect_anomaly", "backward of '", op, "' produced ", anomaly_kind(gi.flat(k)), " in gradient of input ", i,
             " of shape ", gi.shape().str(), ": first non-finite ", anomaly_element(gi, k), "; node '", fn.name(),
             "' with output of shape ", v.value.shape().str(), ", incoming gradient of shape ", g.shape().str(),
             ", input shapes: ", shapes, inner.empty() ? "" : "; ", inner, anomaly_context_suffix());
    }
    return grads;
}

// Runs the walk from `root` seeded with gradient `seed`. `on_done(v, grad)` is called for
// every needed node once its gradient is complete.
template <Real T, class IsTarget, class OnDone>
void walk_backward(const Var<T>& root, const Var<T>& seed, bool create_graph, bool retain_graph,
                   IsTarget&& is_target, OnDone&& on_done) {
    const std::uint64_t walk = next_walk_id();
    auto order = topological_order<T>({root.impl().get()}, walk, is_target);
    GradModeGuard mode(create_graph);
    root.impl()->pending = seed.impl();
    struct NeedBuffer {
        std::unique_ptr<bool[]> p;
        std::size_t cap = 0;
        void resize(std::size_t n) {
            if (n > cap) p.reset(new bool[cap = std::max<std::size_t>(n, 8)]);
        }
        bool& operator[](std::size_t i) { return p[i]; }
        const bool* data() const { return p.get(); }
    } need;
    // An error part-way (an anomaly, a failed check) must not leave gradients pending on
    // nodes that outlive this walk (parameters, a retained graph): the next walk would add
    // them to its own.
    try {
        for (auto it = order.rbegin(); it != order.rend(); ++it) {
            VarImpl<T>* v = *it;
            if (!v->needed || !v->pending) {
                v->pending.reset();
                continue;
            }
            Var<T> g(std::move(v->pending));
            v->pending.reset();
            on_done(v, g);
            if (!v->fn) continue;
            const auto& ins = v->fn->inputs;
            need.resize(ins.size());
            bool any = false;
            for (std::size_t i = 0; i < ins.size(); ++i) {
                need[i] = ins[i]->walk == walk && ins[i]->requires_grad && ins[i]->needed;
                any = any || need[i];
            }
            if (!any) continue;
            const std::span<const bool> needs(need.data(), ins.size());
            // (One initialisation, no assignment: a moved-from vector to destroy costs more
            // than the flag test.)
            std::vector<Var<T>> grads =
                anomaly_enabled() ? anomaly_checked_backward(*v, g, needs) : v->fn->backward(g, needs);
            for (std::size_t i = 0; i < ins.size(); ++i) {
                if (!need[i] || !grads[i].defined()) continue;
                EMBER_CHECK(grads[i].shape() == ins[i]->value.shape(), "backward",
                            "internal error: gradient of shape ", grads[i].shape().str(), " for input of shape ",
                            ins[i]->value.shape().str(), " in '", v->fn->name(), "'");
                accumulate_pending(ins[i].get(), std::move(grads[i]), create_graph);
            }
        }
    } catch (...) {
        for (VarImpl<T>* v : order) v->pending.reset();
        throw;
    }
    if (!retain_graph)
        for (VarImpl<T>* v : order)
            if (v->fn) v->fn->release();
}

template <Real T>
Var<T> seed_for(const Var<T>& out, const Tensor<T>& grad_output, const char* op) {
    if (grad_output.defined()) {
        EMBER_CHECK(grad_output.shape() == out.shape(), op, "grad_output shape ", grad_output.shape().str(),
                    " differs from output shape ", out.shape().str());
        return Var<T>(grad_output);
    }
    EMBER_CHECK(out.numel() == 1, op, "output must be a scalar to be differentiated without grad_output, shape is ",
                out.shape().str());
    return Var<T>(Tensor<T>::ones(out.shape()));
}

}  // namespace detail

/// Accumulates the gradient of `out` into the grad() of every leaf that requires grad.
template <Real T>
void backward(const Var<T>& out, const Tensor<T>& grad_output = {}, BackwardOptions opts = {}) {
    EMBER_CHECK(out.defined(), "backward", "undefined Var");
    EMBER_CHECK(out.requires_grad(), "backward", "output does not require grad (no input requires grad, or it was computed under NoGrad)");
    Var<T> seed = detail::seed_for(out, grad_output, "backward");
    detail::walk_backward<T>(
        out, seed, false, opts.retain_graph, [](VarImpl<T>* v) { return v->fn == nullptr; },
        [](VarImpl<T>* v, const Var<T>& g) {
            if (v->fn) return;
            if (!v->grad.defined()) {
                const Tensor<T>& gv = g.value();
                v->grad = gv.unique() && gv.is_contiguous() ? gv : gv.clone();
            } else {
                v->grad.copy_from(Tensor<T>(v->grad + g.value()));
            }
        });
}

template <Real T>
void Var<T>::backward(BackwardOptions opts) const {
    ember::backward(*this, Tensor<T>(), opts);
}

/// Options of grad().
struct GradArgs {
    /// Record the gradient computation, so that the results can be differentiated again.
    bool create_graph = false;
    std::optional<bool> retain_graph{};  ///< defaults to create_graph, as in PyTorch
};

/// d(output)/d(inputs) without touching any grad(). With create_graph the results are Vars
/// on the graph and can be differentiated again. Inputs that do not affect the output get
/// zeros. As in PyTorch, results may share storage with each other or with grad_output (a
/// sum passes its gradient on uncopied): clone one before changing it in place.
template <Real T>
std::vector<Var<T>> grad(const Var<T>& output, const std::vector<Var<T>>& inputs, GradArgs args = {},
                         const Tensor<T>& grad_output = {}) {
    EMBER_CHECK(output.defined(), "grad", "undefined output");
    std::vector<Var<T>> result(inputs.size());
    for (const Var<T>& in : inputs) EMBER_CHECK(in.defined() && in.requires_grad(), "grad", "every input must require grad");
    if (output.requires_grad()) {
        Var<T> seed = detail::seed_for(output, grad_output, "grad");
        const bool retain = args.retain_graph.value_or(args.create_graph);
        detail::walk_backward<T>(
            output, seed, args.create_graph, retain,
            [&](VarImpl<T>* v) {
                for (const Var<T>& in : inputs)
                    if (in.impl().get() == v) return true;
                return false;
            },
            [&](VarImpl<T>* v, const Var<T>& g) {
                for (std::size_t i = 0; i < inputs.size(); ++i)
                    if (inputs[i].impl().get() == v) result[i] = g;
            });
    }
    for (std::size_t i = 0; i < inputs.size(); ++i)
        if (!result[i].defined()) result[i] = Var<T>(Tensor<T>::zeros(inputs[i].shape()));
    return result;
}

/// backward() of an elementwise expression over Vars, recorded first as one fused node:
/// backward(w * y) rather than backward(Var<double>(w * y)).
template <expr::Expression E>
    requires(E::has_var)
void backward(const E& out, const Tensor<typename E::value_type>& grad_output = {}, BackwardOptions opts = {}) {
    backward(Var<typename E::value_type>(out), grad_output, opts);
}
/// grad() of an elementwise expression over Vars, recorded first as one fused node.
template <expr::Expression E>
    requires(E::has_var)
std::vector<Var<typename E::value_type>> grad(const E& output, const std::vector<Var<typename E::value_type>>& inputs,
                                               GradArgs args = {}, const Tensor<typename E::value_type>& grad_output = {}) {
    return grad(Var<typename E::value_type>(output), inputs, args, grad_output);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_ENGINE_INSTANCES(X, T) \
    X template void backward<T>(const Var<T>&, const Tensor<T>&, BackwardOptions); \
    X template void Var<T>::backward(BackwardOptions) const; \
    X template std::vector<Var<T>> grad<T>(const Var<T>&, const std::vector<Var<T>>&, GradArgs, const Tensor<T>&);
EMBER_EXTERN_INSTANCES(EMBER_ENGINE_INSTANCES)

}  // namespace ember
