#pragma once
/// \file
/// Turning an expression template into a value: a Tensor (no graph) or a Var recorded as
/// ONE graph node whose backward is ONE fused pass (kernel.hpp). When gradients must be
/// differentiable (create_graph), the same derivative rules are replayed over Var
/// (Vocab<Var> below), so the backward is itself recorded and can be differentiated again.
#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <utility>

#include "ember/core/instances.hpp"
#include "ember/expr/kernel.hpp"
#include "ember/ops/broadcast.hpp"

namespace ember {

namespace expr {

/// One op applied to Vars and recorded as its own node, and an op's derivative rule over
/// Var: the steps of a recorded backward (create_graph). Defined at the end of this file and
/// listed in EMBER_VAR_RULE_INSTANCES, so that ember::compiled holds them for every op and a
/// program's own expressions do not compile the nodes that the rules record.
template <class Op, Real T> Var<T> apply_unary(const Op& op, const Var<T>& x);
template <class Op, Real T> Var<T> apply_binary(const Op& op, const Var<T>& a, const Var<T>& b);
template <Real T> Var<T> apply_where(const Var<T>& m, const Var<T>& a, const Var<T>& b);
template <class Op, Real T> Var<T> rule_df(const Op& op, const Var<T>& x, const Var<T>& y, const Var<T>& g);
template <class Op, Real T> Var<T> rule_da(const Op& op, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g);
template <class Op, Real T> Var<T> rule_db(const Op& op, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g);
template <class Op, Real T>
Var<T> rule_da(const Op& op, const Var<T>& m, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g);
template <class Op, Real T>
Var<T> rule_db(const Op& op, const Var<T>& m, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g);

/// Derivative rules over Var: each application records a (small) fused node.
template <Real T>
struct Vocab<Var<T>> {
    using V = Var<T>;
    using scalar = T;
    template <class Op> static V unary(const Op& op, const V& x) { return apply_unary(op, x); }
    template <class Op> static V binary(const Op& op, const V& a, const V& b) { return apply_binary(op, a, b); }
    static V constant(T v, const V&) { return V::constant(v); }
    static V gt(const V& a, const V& b) { return apply_binary(GtOp{}, a, b); }
    static V ge(const V& a, const V& b) { return apply_binary(GeOp{}, a, b); }
    static V nonzero(const V& m) { return m; }  ///< masks are 0/1 values already
    static V where(const V& m, const V& a, const V& b) { return apply_where(m, a, b); }
};

/// Leaf values as Vars, for replaying an expression's derivative over Var.
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
        adj[K] = adj[K].defined() ? apply_binary(AddOp{}, adj[K], g) : g;
    }
};

// ---- anomaly mode (anomaly.hpp): which elementwise op inside a fused node misbehaved ----
namespace anomaly {

/// Leaf values of one output element, every load a splat: the expression's own batch code
/// evaluated at that single element.
template <Real T, int L>
struct PointContext {
    using V = Batch<T>;
    std::array<T, static_cast<std::size_t>(L > 0 ? L : 1)> val{};
    template <int K> V load() const { return V(val[K]); }
    V splat(T v) const { return V(v); }
    static constexpr bool needs(int, int) { return true; }
};

template <Real T>
bool fin(const Batch<T>& v) {
    return std::isfinite(v.get(0));
}

/// The first elementwise op (in evaluation order) that turned finite values into a
/// non-finite one: its name, operands, output and, for a derivative, incoming gradient
/// and which operand's gradient it was.
template <Real T>
struct Culprit {
    const char* op = nullptr;
    std::array<T, 3> x{};
    int arity = 0;
    T y{}, g{}, result{};
    int operand = -1;  ///< backward only
    template <class... B> void set(const char* name, T out, const B&... xs) {
        op = name;
        arity = 0;
        ((x[static_cast<std::size_t>(arity++)] = xs.get(0)), ...);
        y = out;
    }
};

/// The walks below recurse through overloads on the node types; declared first so that each
/// finds the others (argument-dependent lookup would only search ember::expr).
template <class Op, class A> void describe(const Unary<Op, A>&, int&, std::string&);
template <class Op, class A, class B> void describe(const Binary<Op, A, B>&, int&, std::string&);
template <class Op, class M, class A, class B> void describe(const Ternary<Op, M, A, B>&, int&, std::string&);
template <class Op, class A> bool constants_finite(const Unary<Op, A>&);
template <class Op, class A, class B> bool constants_finite(const Binary<Op, A, B>&);
template <class Op, class M, class A, class B> bool constants_finite(const Ternary<Op, M, A, B>&);
template <class Op, class A, class R, Real T> bool forward_culprit(const Unary<Op, A>&, const R&, Culprit<T>&);
template <class Op, class A, class B, class R, Real T> bool forward_culprit(const Binary<Op, A, B>&, const R&, Culprit<T>&);
template <class Op, class M, class A, class B, class R, Real T>
bool forward_culprit(const Ternary<Op, M, A, B>&, const R&, Culprit<T>&);
template <class Op, class A, class R, Real T>
bool backward_culprit(const Unary<Op, A>&, const R&, const Batch<T>&, Culprit<T>&);
template <class Op, class A, class B, class R, Real T>
bool backward_culprit(const Binary<Op, A, B>&, const R&, const Batch<T>&, Culprit<T>&);
template <class Op, class M, class A, class B, class R, Real T>
bool backward_culprit(const Ternary<Op, M, A, B>&, const R&, const Batch<T>&, Culprit<T>&);

/// "mul(log(#0), 2)": the expression with leaves numbered by slot.
template <Real T> void describe(const VarLeaf<T>&, int& slot, std::string& s) {
    s += '#';  // appended piece by piece: g++ 12 warns on "#" + string
    s += std::to_string(slot++);
}
template <Real T> void describe(const TensorLeaf<T>&, int& slot, std::string& s) {
    s += '#';
    s += std::to_string(slot++);
}
template <Real T> void describe(const ScalarLeaf<T>& l, int&, std::string& s) { s += detail::anomaly_number(l.value); }
template <class Op, class A> void describe(const Unary<Op, A>& n, int& slot, std::string& s) {
    s += Op::name;
    s += "(";
    describe(n.a, slot, s);
    s += ")";
}
template <class Op, class A, class B> void describe(const Binary<Op, A, B>& n, int& slot, std::string& s) {
    s += Op::name;
    s += "(";
    describe(n.a, slot, s);
    s += ", ";
    describe(n.b, slot, s);
    s += ")";
}
template <class Op, class M, class A, class B> void describe(const Ternary<Op, M, A, B>& n, int& slot, std::string& s) {
    s += Op::name;
    s += "(";
    describe(n.m, slot, s);
    s += ", ";
    describe(n.a, slot, s);
    s += ", ";
    describe(n.b, slot, s);
    s += ")";
}

/// Whether every scalar constant in the expression is finite.
template <Real T> bool constants_finite(const VarLeaf<T>&) { return true; }
template <Real T> bool constants_finite(const TensorLeaf<T>&) { return true; }
template <Real T> bool constants_finite(const ScalarLeaf<T>& l) { return std::isfinite(l.value); }
template <class Op, class A> bool constants_finite(const Unary<Op, A>& n) { return constants_finite(n.a); }
template <class Op, class A, class B> bool constants_finite(const Binary<Op, A, B>& n) {
    return constants_finite(n.a) && constants_finite(n.b);
}
template <class Op, class M, class A, class B> bool constants_finite(const Ternary<Op, M, A, B>& n) {
    return constants_finite(n.m) && constants_finite(n.a) && constants_finite(n.b);
}

/// Forward: the deepest op whose output is non-finite while its operands are finite.
template <Real T, class R> bool forward_culprit(const VarLeaf<T>&, const R&, Culprit<T>&) { return false; }
template <Real T, class R> bool forward_culprit(const TensorLeaf<T>&, const R&, Culprit<T>&) { return false; }
template <Real T, class R> bool forward_culprit(const ScalarLeaf<T>&, const R&, Culprit<T>&) { return false; }
template <class Op, class A, class R, Real T> bool forward_culprit(const Unary<Op, A>& n, const R& r, Culprit<T>& c) {
    if (forward_culprit(n.a, r.a, c)) return true;
    if (fin(r.y) || !fin(r.a.y)) return false;
    c.set(Op::name, r.y.get(0), r.a.y);
    return true;
}
template <class Op, class A, class B, class R, Real T>
bool forward_culprit(const Binary<Op, A, B>& n, const R& r, Culprit<T>& c) {
    if (forward_culprit(n.a, r.a, c) || forward_culprit(n.b, r.b, c)) return true;
    if (fin(r.y) || !fin(r.a.y) || !fin(r.b.y)) return false;
    c.set(Op::name, r.y.get(0), r.a.y, r.b.y);
    return true;
}
template <class Op, class M, class A, class B, class R, Real T>
bool forward_culprit(const Ternary<Op, M, A, B>& n, const R& r, Culprit<T>& c) {
    if (forward_culprit(n.m, r.a, c) || forward_culprit(n.a, r.b, c) || forward_culprit(n.b, r.c, c)) return true;
    if (fin(r.y) || !fin(r.a.y) || !fin(r.b.y) || !fin(r.c.y)) return false;
    c.set(Op::name, r.y.get(0), r.a.y, r.b.y, r.c.y);
    return true;
}

/// Backward: the first derivative rule that, from finite operands, output and incoming
/// gradient, gives a non-finite gradient for one of its operands.
template <Real T, class R> bool backward_culprit(const VarLeaf<T>&, const R&, const Batch<T>&, Culprit<T>&) { return false; }
template <Real T, class R> bool backward_culprit(const TensorLeaf<T>&, const R&, const Batch<T>&, Culprit<T>&) { return false; }
template <Real T, class R> bool backward_culprit(const ScalarLeaf<T>&, const R&, const Batch<T>&, Culprit<T>&) { return false; }
template <Real T, class... X>
bool derivative_blamed(const Batch<T>& d, const Batch<T>& g, const Batch<T>& y, const X&... xs) {
    return !fin(d) && fin(g) && fin(y) && (fin(xs) && ...);
}
template <class Op, class A, class R, Real T>
bool backward_culprit(const Unary<Op, A>& n, const R& r, const Batch<T>& g, Culprit<T>& c) {
    if constexpr (Op::differentiable && A::has_grad_path) {
        const Batch<T> ga = n.op.df(r.a.y, r.y, g);
        if (derivative_blamed(ga, g, r.y, r.a.y)) {
            c.set(Op::name, r.y.get(0), r.a.y);
            c.g = g.get(0), c.result = ga.get(0), c.operand = 0;
            return true;
        }
        return backward_culprit(n.a, r.a, ga, c);
    }
    return false;
}
template <class Op, class A, class B, class R, Real T>
bool backward_culprit(const Binary<Op, A, B>& n, const R& r, const Batch<T>& g, Culprit<T>& c) {
    if constexpr (Op::differentiable) {
        if constexpr (A::has_grad_path) {
            const Batch<T> ga = n.op.da(r.a.y, r.b.y, r.y, g);
            if (derivative_blamed(ga, g, r.y, r.a.y, r.b.y)) {
                c.set(Op::name, r.y.get(0), r.a.y, r.b.y);
                c.g = g.get(0), c.result = ga.get(0), c.operand = 0;
                return true;
            }
            if (backward_culprit(n.a, r.a, ga, c)) return true;
        }
        if constexpr (B::has_grad_path) {
            const Batch<T> gb = n.op.db(r.a.y, r.b.y, r.y, g);
            if (derivative_blamed(gb, g, r.y, r.a.y, r.b.y)) {
                c.set(Op::name, r.y.get(0), r.a.y, r.b.y);
                c.g = g.get(0), c.result = gb.get(0), c.operand = 1;
                return true;
            }
            if (backward_culprit(n.b, r.b, gb, c)) return true;
        }
    }
    return false;
}
template <class Op, class M, class A, class B, class R, Real T>
bool backward_culprit(const Ternary<Op, M, A, B>& n, const R& r, const Batch<T>& g, Culprit<T>& c) {
    if constexpr (A::has_grad_path) {
        const Batch<T> ga = n.op.da(r.a.y, r.b.y, r.c.y, r.y, g);
        if (derivative_blamed(ga, g, r.y, r.a.y, r.b.y, r.c.y)) {
            c.set(Op::name, r.y.get(0), r.a.y, r.b.y, r.c.y);
            c.g = g.get(0), c.result = ga.get(0), c.operand = 1;
            return true;
        }
        if (backward_culprit(n.a, r.b, ga, c)) return true;
    }
    if constexpr (B::has_grad_path) {
        const Batch<T> gb = n.op.db(r.a.y, r.b.y, r.c.y, r.y, g);
        if (derivative_blamed(gb, g, r.y, r.a.y, r.b.y, r.c.y)) {
            c.set(Op::name, r.y.get(0), r.a.y, r.b.y, r.c.y);
            c.g = g.get(0), c.result = gb.get(0), c.operand = 2;
            return true;
        }
        if (backward_culprit(n.b, r.c, gb, c)) return true;
    }
    return false;
}

/// The leaves of an expression seen element by element in the output's index space. It
/// depends on the expressions only through their scalar type and number of leaves, so all
/// expressions with as many leaves share one instance.
template <Real T, int L>
struct Points {
    static constexpr std::size_t N = static_cast<std::size_t>(L);
    const std::array<LeafRef<T>, N>& leaves;
    Shape shape;
    std::array<Strides, N> st{};

    Points(const std::array<LeafRef<T>, N>& ls, const Shape& out) : leaves(ls), shape(out) {
        for (std::size_t k = 0; k < N; ++k) st[k] = expanded_strides(leaves[k].value(), shape);
    }
    PointContext<T, L> at(Index i) const {
        std::array<Index, kMaxRank> idx{};
        for (int d = shape.rank() - 1; d >= 0; --d) {
            idx[static_cast<std::size_t>(d)] = i % shape[d];
            i /= shape[d];
        }
        PointContext<T, L> c;
        for (std::size_t k = 0; k < N; ++k) {
            Index off = 0;
            for (int d = 0; d < shape.rank(); ++d) off += idx[static_cast<std::size_t>(d)] * st[k][static_cast<std::size_t>(d)];
            c.val[k] = leaves[k].value().data()[off];
        }
        return c;
    }
};

template <Real T>
std::string operands_text(const Culprit<T>& c) {
    std::string s;
    for (int k = 0; k < c.arity; ++k) s += (k ? ", " : "") + detail::anomaly_number(c.x[static_cast<std::size_t>(k)]);
    return s;
}

template <class E>
std::string describe(const E& e) {
    int slot = 0;
    std::string s;
    describe(e, slot, s);
    return s;
}

/// "#0 Var [4], #1 Tensor [1]"
template <Real T>
std::string leaves_text(std::span<const LeafRef<T>> leaves) {
    std::string s;
    for (std::size_t k = 0; k < leaves.size(); ++k) {  // appended piece by piece: g++ 12 warns on "..." + string
        s += k ? ", #" : "#";
        s += std::to_string(k);
        s += leaves[k].var ? " Var " : " Tensor ";
        s += leaves[k].value().shape().str();
    }
    return s;
}

/// The check after a fused expression's forward: `out` is its (contiguous) value.
template <class E, Real T = typename E::value_type>
[[gnu::noinline, gnu::cold]] void check_forward(const E& e, const Leaves<E>& leaves, const Tensor<T>& out) {
    Index i = detail::first_non_finite(out);
    if (i < 0) return;
    const Points<T, E::leaves> points(leaves, out.shape());
    for (; i >= 0; i = detail::first_non_finite(out, i + 1)) {
        const auto ctx = points.at(i);
        const auto rec = e.template record<0>(ctx);
        Culprit<T> c;
        if (!forward_culprit(e, rec, c)) continue;  // propagates a non-finite leaf or constant
        detail::fail("detect_anomaly", "forward of '", c.op, "' produced ", detail::anomaly_kind(c.y),
                     " in fused elementwise ", describe(e), ": output of shape ", out.shape().str(), ", first non-finite ",
                     detail::anomaly_element(out, i), " ('", c.op, "' of ", operands_text(c), " gave ",
                     detail::anomaly_number(c.y), "); inputs: ", leaves_text<T>(leaves), detail::anomaly_context_suffix());
    }
}

}  // namespace anomaly

/// Leaf slots whose gradient is the incoming gradient itself: both of a + b, the a of a - b.
/// (A residual sum, or a bias added by broadcasting, hands g on to its full-shape operand
/// instead of copying it.)
template <class E>
struct PassThroughSlots {
    static constexpr std::array<bool, static_cast<std::size_t>(E::leaves)> value{};
};
template <Real T>
struct PassThroughSlots<Binary<AddOp, VarLeaf<T>, VarLeaf<T>>> {
    static constexpr std::array<bool, 2> value{true, true};
};
template <Real T>
struct PassThroughSlots<Binary<SubOp, VarLeaf<T>, VarLeaf<T>>> {
    static constexpr std::array<bool, 2> value{true, false};
};

/// The graph node of one fused elementwise expression.
template <class E>
struct ExprNode final : Node<typename E::value_type> {
    using T = typename E::value_type;
    static constexpr int L = E::leaves;
    std::optional<E> e;  ///< holds the leaves (Vars and Tensors) alive until release
    std::array<int, static_cast<std::size_t>(L)> slot_to_input;  ///< leaf slot -> index in inputs, or -1

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
    ~ExprNode() override { e.reset(); }  ///< before inputs drop iteratively
    const char* name() const override { return "fused elementwise"; }
    void release() override {
        e.reset();
        Node<T>::release();
    }

    [[gnu::cold]] bool anomaly_inputs_finite() const override {
        const Leaves<E> leaves = collect_leaves(*e);
        for (const auto& l : leaves)
            if (!detail::all_finite(l.value())) return false;
        return anomaly::constants_finite(*e);
    }
    /// Searches the output elements in order for the first derivative rule that turns finite
    /// values into a non-finite gradient.
    [[gnu::cold]] bool anomaly_explain_backward(const Tensor<T>& g, std::string& op, std::string& text) const override {
        Leaves<E> leaves = collect_leaves(*e);
        Shape out_shape;
        for (const auto& l : leaves) out_shape = broadcast_shapes(out_shape, l.value().shape(), "backward");
        if (!(g.shape() == out_shape)) return false;
        const anomaly::Points<T, E::leaves> points(leaves, out_shape);
        for (Index i = 0; i < out_shape.numel(); ++i) {
            const auto ctx = points.at(i);
            const auto rec = e->template record<0>(ctx);
            anomaly::Culprit<T> c;
            if (!anomaly::backward_culprit(*e, rec, Batch<T>(g.flat(i)), c)) continue;
            op = c.op;
            text = "'" + op + "' is part of fused elementwise " + anomaly::describe(*e) + " (inputs " +
                     anomaly::leaves_text<T>(leaves) + "); at its output element " + std::to_string(i) + " (" +
                     ember::detail::anomaly_multi_index(out_shape, i) + ") its derivative for operand " +
                     std::to_string(c.operand) + " got operands (" + anomaly::operands_text(c) + "), output " +
                     ember::detail::anomaly_number(c.y) + ", incoming gradient " + ember::detail::anomaly_number(c.g) +
                     " and gave " + ember::detail::anomaly_number(c.result);
            return true;
        }
        return false;
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
        // Operands and incoming gradient in one dense, permuted layout (a convolution's output,
        // say): the pass runs over memory in order and the gradients keep the layout.
        const Tensor<T>* like = shared_permuted_layout(ls);
        const bool in_memory = like && g.value().shape() == like->shape() && g.value().strides() == like->strides();
        Strides memory_strides{};
        memory_strides[0] = 1;
        std::array<GradTarget<T>, static_cast<std::size_t>(L)> targets;
        std::array<int, static_cast<std::size_t>(L)> compact, map;
        std::vector<Var<T>> out(this->inputs.size());
        int D = 0;
        for (std::size_t i = 0; i < this->inputs.size(); ++i) {
            compact[i] = -1;
            if (!need[i]) continue;
            const Shape& s = this->inputs[i]->value.shape();
            const bool full = s == out_shape;
            if (full && (in_memory || g.value().is_contiguous()) && passes_gradient_through(i)) {  // the gradient is g
                out[i] = Var<T>(g.value());
                continue;
            }
            Tensor<T> grad = in_memory ? Tensor<T>::empty_like(*like) : full ? Tensor<T>::empty(s) : Tensor<T>::zeros(s);
            targets[static_cast<std::size_t>(D)] = {grad.data(), in_memory ? memory_strides : grad.expand(out_shape).strides(),
                                                    full, grad.numel()};
            compact[i] = D++;
            out[i] = Var<T>(std::move(grad));
        }
        for (std::size_t k = 0; k < map.size(); ++k)
            map[k] = slot_to_input[k] >= 0 ? compact[static_cast<std::size_t>(slot_to_input[k])] : -1;
        if (D == 0) return out;
        if (in_memory) {
            Leaves<E> flat = in_memory_order(ls);
            backward_into(*e, flat, g.value().memory_order(), map, targets, D);
        } else {
            backward_into(*e, ls, g.value(), map, targets, D);
        }
        return out;
    }

    // Input i's gradient is g when it sits in exactly one leaf slot and that slot passes g on
    // (x + x sits in two: its gradient is 2g).
    bool passes_gradient_through(std::size_t i) const {
        int slots = 0;
        bool passes = false;
        for (std::size_t k = 0; k < slot_to_input.size(); ++k)
            if (slot_to_input[k] == static_cast<int>(i)) ++slots, passes = PassThroughSlots<E>::value[k];
        return slots == 1 && passes;
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
            o = o.defined() ? apply_binary(AddOp{}, o, c.adj[k]) : c.adj[k];
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
    if (anomaly_enabled()) [[unlikely]]
        expr::anomaly::check_forward(e, leaves, p_->value);
}

/// dst = src in place, where src is a Tensor or an elementwise expression over Tensors of
/// dst's shape: one fused pass, no temporary (optimisers update parameters this way).
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

/// Evaluates an expression: a Var if it has Var leaves, else a Tensor.
template <expr::Expression E>
auto eval(const E& e) {
    using T = typename E::value_type;
    if constexpr (E::has_var) return Var<T>(e);
    else return Tensor<T>(e);
}

namespace detail {
/// Whether X is an elementwise expression with Var leaves.
template <class X>
constexpr bool is_var_expression() {
    if constexpr (expr::Expression<X>) return X::has_var;
    else return false;
}
/// Whether any of A is one.
template <class... A>
concept HasVarExpression = (is_var_expression<std::remove_cvref_t<A>>() || ...);
/// An argument on its way to a function written for Vars: an expression over Vars becomes
/// its Var (one fused node), anything else passes through as it is.
template <class X>
decltype(auto) as_var_argument(X&& x) {
    using E = std::remove_cvref_t<X>;
    if constexpr (expr::Expression<E>) return Var<typename E::value_type>(x);
    else return std::forward<X>(x);
}
}  // namespace detail

/// Lets the function template NAME, written for Var<T> parameters (T deduced), also take
/// elementwise expressions over Vars in them: gan::wasserstein_critic_loss(d_real * 2, d_fake)
/// rather than (Var<float>(d_real * 2), d_fake). Each expression is recorded as one fused
/// node and the call forwarded; calls with Vars only never see this overload.
#define EMBER_TAKES_EXPRESSIONS(NAME)                                          \
    template <class... A>                                                      \
        requires ::ember::detail::HasVarExpression<A...>                       \
    auto NAME(A&&... a) {                                                      \
        return NAME(::ember::detail::as_var_argument(std::forward<A>(a))...);  \
    }
/// The same for a function with one explicit template parameter before T, as
/// fdiv::critic_loss<KL>(...): PARAM is its declaration (`class Div`), ARG its name.
#define EMBER_TAKES_EXPRESSIONS_AFTER(PARAM, ARG, NAME)                              \
    template <PARAM, class... A>                                                     \
        requires ::ember::detail::HasVarExpression<A...>                             \
    auto NAME(A&&... a) {                                                            \
        return NAME<ARG>(::ember::detail::as_var_argument(std::forward<A>(a))...);   \
    }

namespace expr {

template <class Op, Real T>
Var<T> apply_unary(const Op& op, const Var<T>& x) {
    return Var<T>(make_unary(op, x));
}
template <class Op, Real T>
Var<T> apply_binary(const Op& op, const Var<T>& a, const Var<T>& b) {
    return Var<T>(make_binary(op, a, b));
}
template <Real T>
Var<T> apply_where(const Var<T>& m, const Var<T>& a, const Var<T>& b) {
    return Var<T>(expr::where(m, a, b));
}
template <class Op, Real T>
Var<T> rule_df(const Op& op, const Var<T>& x, const Var<T>& y, const Var<T>& g) {
    return op.df(x, y, g);
}
template <class Op, Real T>
Var<T> rule_da(const Op& op, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g) {
    return op.da(a, b, y, g);
}
template <class Op, Real T>
Var<T> rule_db(const Op& op, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g) {
    return op.db(a, b, y, g);
}
template <class Op, Real T>
Var<T> rule_da(const Op& op, const Var<T>& m, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g) {
    return op.da(m, a, b, y, g);
}
template <class Op, Real T>
Var<T> rule_db(const Op& op, const Var<T>& m, const Var<T>& a, const Var<T>& b, const Var<T>& y, const Var<T>& g) {
    return op.db(m, a, b, y, g);
}

// What ember::compiled instantiates for float and double (core/instances.hpp): every op
// applied to Vars with its rule, and the graph node of every op on Var operands (the
// expressions `f(x)`, `x + y`, `x * 2` a program writes most), whose backward is then not
// compiled again in the program.
#define EMBER_VAR_UNARY_INSTANCES(X, T, OP)                                                            \
    X template Var<T> apply_unary<OP, T>(const OP&, const Var<T>&);                                    \
    X template Var<T> rule_df<OP, T>(const OP&, const Var<T>&, const Var<T>&, const Var<T>&);          \
    X template struct ExprNode<Unary<OP, VarLeaf<T>>>;
#define EMBER_VAR_BINARY_INSTANCES(X, T, OP)                                                           \
    X template Var<T> apply_binary<OP, T>(const OP&, const Var<T>&, const Var<T>&);                    \
    X template Var<T> rule_da<OP, T>(const OP&, const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&); \
    X template Var<T> rule_db<OP, T>(const OP&, const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&); \
    X template struct ExprNode<Binary<OP, VarLeaf<T>, VarLeaf<T>>>;
#define EMBER_VAR_ARITHMETIC_INSTANCES(X, T, OP)                                                       \
    EMBER_VAR_BINARY_INSTANCES(X, T, OP)                                                               \
    X template struct ExprNode<Binary<OP, VarLeaf<T>, ScalarLeaf<T>>>;                                 \
    X template struct ExprNode<Binary<OP, ScalarLeaf<T>, VarLeaf<T>>>;
#define EMBER_VAR_RULE_INSTANCES(X, T)                                                                 \
    EMBER_VAR_UNARY_INSTANCES(X, T, NegOp)                                                             \
    EMBER_VAR_UNARY_INSTANCES(X, T, ExpOp)                                                             \
    EMBER_VAR_UNARY_INSTANCES(X, T, LogOp)                                                             \
    EMBER_VAR_UNARY_INSTANCES(X, T, Log1pOp)                                                           \
    EMBER_VAR_UNARY_INSTANCES(X, T, Expm1Op)                                                           \
    EMBER_VAR_UNARY_INSTANCES(X, T, SqrtOp)                                                            \
    EMBER_VAR_UNARY_INSTANCES(X, T, RsqrtOp)                                                           \
    EMBER_VAR_UNARY_INSTANCES(X, T, SquareOp)                                                          \
    EMBER_VAR_UNARY_INSTANCES(X, T, AbsOp)                                                             \
    EMBER_VAR_UNARY_INSTANCES(X, T, TanhOp)                                                            \
    EMBER_VAR_UNARY_INSTANCES(X, T, Sech2Op)                                                           \
    EMBER_VAR_UNARY_INSTANCES(X, T, SigmoidOp)                                                         \
    EMBER_VAR_UNARY_INSTANCES(X, T, SoftplusOp)                                                        \
    EMBER_VAR_UNARY_INSTANCES(X, T, LogSigmoidOp)                                                      \
    EMBER_VAR_UNARY_INSTANCES(X, T, ReluOp)                                                            \
    EMBER_VAR_UNARY_INSTANCES(X, T, LeakyReluOp)                                                       \
    EMBER_VAR_UNARY_INSTANCES(X, T, EluOp)                                                             \
    EMBER_VAR_UNARY_INSTANCES(X, T, ClampOp)                                                           \
    EMBER_VAR_UNARY_INSTANCES(X, T, PowScalarOp)                                                       \
    X template Var<T> apply_unary<SignOp, T>(const SignOp&, const Var<T>&);                            \
    EMBER_VAR_ARITHMETIC_INSTANCES(X, T, AddOp)                                                        \
    EMBER_VAR_ARITHMETIC_INSTANCES(X, T, SubOp)                                                        \
    EMBER_VAR_ARITHMETIC_INSTANCES(X, T, MulOp)                                                        \
    EMBER_VAR_ARITHMETIC_INSTANCES(X, T, DivOp)                                                        \
    EMBER_VAR_BINARY_INSTANCES(X, T, MinOp)                                                            \
    EMBER_VAR_BINARY_INSTANCES(X, T, MaxOp)                                                            \
    EMBER_VAR_BINARY_INSTANCES(X, T, PowOp)                                                            \
    X template Var<T> apply_binary<GtOp, T>(const GtOp&, const Var<T>&, const Var<T>&);                \
    X template Var<T> apply_binary<GeOp, T>(const GeOp&, const Var<T>&, const Var<T>&);                \
    X template Var<T> apply_where<T>(const Var<T>&, const Var<T>&, const Var<T>&);                     \
    X template Var<T> rule_da<WhereOp, T>(const WhereOp&, const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&); \
    X template Var<T> rule_db<WhereOp, T>(const WhereOp&, const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&); \
    X template struct ExprNode<Ternary<WhereOp, VarLeaf<T>, VarLeaf<T>, VarLeaf<T>>>;
EMBER_EXTERN_INSTANCES(EMBER_VAR_RULE_INSTANCES)

}  // namespace expr

}  // namespace ember
