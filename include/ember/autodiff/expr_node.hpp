#pragma once
// Turning an expression template into a value: a Tensor (no graph) or a Var recorded as
// ONE graph node whose backward is ONE fused pass (kernel.hpp). When gradients must be
// differentiable (create_graph), the same derivative rules are replayed over Var
// (Vocab<Var> below), so the backward is itself recorded and can be differentiated again.
#include <algorithm>

#include "ember/expr/kernel.hpp"
#include "ember/ops/broadcast.hpp"

namespace ember {

namespace expr {

// Derivative rules over Var: each application records a (small) fused node.
template <Real T>
struct Vocab<Var<T>> {
    using V = Var<T>;
    using scalar = T;
    template <class Op> static V unary(const Op& op, const V& x) { return make_unary(op, x); }
    template <class Op> static V binary(const Op& op, const V& a, const V& b) { return make_binary(op, a, b); }
    static V constant(T v, const V&) { return V::constant(v); }
    static V gt(const V& a, const V& b) { return a > b; }
    static V ge(const V& a, const V& b) { return a >= b; }
    static V nonzero(const V& m) { return m; }  // masks are 0/1 values already
    static V where(const V& m, const V& a, const V& b) { return expr::where(m, a, b); }
};

// Leaf values as Vars, for replaying an expression's derivative over Var.
template <Real T, int L>
struct VarContext {
    using V = Var<T>;
    std::array<V, L> vars;
    std::array<bool, L> need{};
    std::array<V, L> adj;
    template <int K> V load() const { return vars[K]; }
    V splat(T v) const { return V::constant(v); }
    bool needs(int from, int to) const {
        for (int k = from; k < to; ++k)
            if (need[static_cast<std::size_t>(k)]) return true;
        return false;
    }
    template <int K> void accumulate(const V& g) {
        if (!need[K]) return;
        adj[K] = adj[K].defined() ? V(adj[K] + g) : g;
    }
};

// The graph node of one fused elementwise expression.
template <class E>
struct ExprNode final : Node<typename E::value_type> {
    using T = typename E::value_type;
    static constexpr int L = E::leaves;
    std::optional<E> e;  // holds the leaves (Vars and Tensors) alive until release
    std::array<int, static_cast<std::size_t>(L)> slot_to_input;  // leaf slot -> index in inputs, or -1

    ExprNode(const E& expr, const Leaves<E>& leaves) : e(expr) {
        slot_to_input.fill(-1);
        this->inputs.reserve(leaves.size());
        for (std::size_t k = 0; k < leaves.size(); ++k) {
            if (!leaves[k].var || !leaves[k].impl()->requires_grad) continue;
            const ImplPtr<T>& v = *leaves[k].var;
            const std::size_t at = this->inputs.index_of(v);
            slot_to_input[k] = static_cast<int>(at);
            if (at == this->inputs.size()) this->inputs.push_back(v);
        }
    }
    ~ExprNode() override { e.reset(); }  // before inputs drop iteratively
    const char* name() const override { return "fused elementwise"; }
    void release() override {
        e.reset();
        Node<T>::release();
    }

    std::vector<Var<T>> backward(const Var<T>& g, std::span<const bool> need) override {
        return grad_enabled() ? backward_recorded(g, need) : backward_fused(g, need);
    }

private:
    // One SIMD pass: recompute the forward in registers, push g down, store the gradients.
    std::vector<Var<T>> backward_fused(const Var<T>& g, std::span<const bool> need) {
        Leaves<E> ls = collect_leaves(*e);
        Shape out_shape;
        for (const auto& l : ls) out_shape = broadcast_shapes(out_shape, l.value().shape(), "backward");
        std::array<GradTarget<T>, static_cast<std::size_t>(L)> targets;
        std::array<int, static_cast<std::size_t>(L)> compact, map;
        std::vector<Var<T>> out(this->inputs.size());
        int D = 0;
        for (std::size_t i = 0; i < this->inputs.size(); ++i) {
            compact[i] = -1;
            if (!need[i]) continue;
            const Shape& s = this->inputs[i]->value.shape();
            const bool full = s == out_shape;
            Tensor<T> grad = full ? Tensor<T>::empty(s) : Tensor<T>::zeros(s);
            targets[static_cast<std::size_t>(D)] = {grad.data(), grad.expand(out_shape).strides(), full};
            compact[i] = D++;
            out[i] = Var<T>(std::move(grad));
        }
        for (std::size_t k = 0; k < map.size(); ++k)
            map[k] = slot_to_input[k] >= 0 ? compact[static_cast<std::size_t>(slot_to_input[k])] : -1;
        backward_into(*e, ls, g.value(), map, targets, D);
        return out;
    }

    // The same rules over Var: every step is recorded, so the result is differentiable.
    std::vector<Var<T>> backward_recorded(const Var<T>& g, std::span<const bool> need) {
        VarContext<T, L> c;
        const Leaves<E> leaves = collect_leaves(*e);
        for (std::size_t k = 0; k < leaves.size(); ++k) {
            const int i = slot_to_input[k];
            c.vars[k] = leaves[k].var ? Var<T>(*leaves[k].var) : Var<T>(leaves[k].value());
            c.need[k] = i >= 0 && need[static_cast<std::size_t>(i)];
        }
        auto rec = e->template record<0>(c);
        e->template backprop<0>(c, rec, g);
        std::vector<Var<T>> out(this->inputs.size());
        for (std::size_t k = 0; k < leaves.size(); ++k) {
            const int i = slot_to_input[k];
            if (i < 0 || !c.adj[k].defined()) continue;
            Var<T>& o = out[static_cast<std::size_t>(i)];
            o = o.defined() ? Var<T>(o + c.adj[k]) : c.adj[k];
        }
        for (std::size_t i = 0; i < out.size(); ++i)
            if (out[i].defined()) out[i] = sum_to(out[i], this->inputs[i]->value.shape());
        return out;
    }
};

}  // namespace expr

template <Real T>
template <expr::Expression E>
Tensor<T>::Tensor(const E& e) {
    static_assert(std::same_as<typename E::value_type, T>, "ember: expression and tensor scalar types differ");
    static_assert(!E::has_var, "ember: this expression contains Var leaves; assign it to a Var (or use .value())");
    auto leaves = expr::collect_leaves(e);
    *this = expr::evaluate(e, leaves, "elementwise");
}

template <Real T>
template <expr::Expression E>
Var<T>::Var(const E& e) {
    static_assert(std::same_as<typename E::value_type, T>, "ember: expression and Var scalar types differ");
    auto leaves = expr::collect_leaves(e);
    Tensor<T> value = expr::evaluate(e, leaves, "elementwise");
    bool any = false;
    for (auto& l : leaves) any = any || (l.var && l.impl()->requires_grad);
    p_ = detail::make_small_shared<VarImpl<T>>();
    p_->value = std::move(value);
    if (!E::has_grad_path || !any || !grad_enabled()) return;  // e.g. a comparison: no gradient
    p_->fn = detail::make_small_shared<expr::ExprNode<E>>(e, leaves);
    p_->requires_grad = true;
}

// dst = src in place, where src is a Tensor or an elementwise expression over Tensors of
// dst's shape: one fused pass, no temporary (optimisers update parameters this way).
template <Real T, class Src>
void assign(const Tensor<T>& dst, const Src& src) {
    if constexpr (expr::is_tensor<Src>::value) {
        dst.copy_from(src);
    } else {
        static_assert(expr::Expression<Src>, "ember: assign() takes a Tensor or an elementwise expression");
        static_assert(std::same_as<typename Src::value_type, T>, "ember: expression and tensor scalar types differ");
        static_assert(!Src::has_var, "ember: assign() evaluates expressions over Tensors, not Vars");
        expr::evaluate_to(src, dst, "assign");
    }
}

// Evaluates an expression: a Var if it has Var leaves, else a Tensor.
template <expr::Expression E>
auto eval(const E& e) {
    using T = typename E::value_type;
    if constexpr (E::has_var) return Var<T>(e);
    else return Tensor<T>(e);
}

}  // namespace ember
