#pragma once
/// \file
/// Elementwise expression templates. `softplus(a * x + b) * sigmoid(x)` builds a small tree
/// of Unary/Binary/Ternary nodes over leaves (Var, Tensor or scalar); nothing is computed
/// until the tree is converted to a Var or Tensor, which evaluates it in one SIMD pass
/// (kernel.hpp) and, for Var, records it as ONE graph node (autodiff/expr_node.hpp).
///
/// Every node offers the same three walks over a "context" C that supplies leaf values:
///
///     eval<Off>(c)              the value (an xsimd batch, or a Var when recording);
///     record<Off>(c)            the value plus the values of all sub-nodes (a tape);
///     backprop<Off>(c, rec, g)  pushes the gradient g down the tape into c's leaf slots.
/// Off is the compile-time slot of the node's first leaf, so leaf loads and gradient
/// accumulation index fixed registers.
#include <array>
#include <cmath>
#include <type_traits>
#include <vector>

#include "ember/autodiff/var.hpp"
#include "ember/expr/ops.hpp"

/// Elementwise expression templates: the functions and operators here build expression
/// nodes that compute nothing until converted to a Tensor or Var, which evaluates the whole
/// tree in one fused SIMD pass. Namespace ember brings them in by using-declarations, so
/// that `ember::exp(x)` and argument-dependent lookup find them.
namespace ember::expr {

/// A leaf as the kernels see it. It points into the expression tree (which outlives every
/// use) instead of copying handles: recording an op then touches no reference counts.
template <Real T>
struct LeafRef {
    const Tensor<T>* tensor = nullptr;  ///< the leaf's value
    const ImplPtr<T>* var = nullptr;    ///< the Var it came from, or null for a constant
    Tensor<T> copy;                     ///< a contiguous copy, when the kernel needed one

    const Tensor<T>& value() const { return copy.defined() ? copy : *tensor; }
    VarImpl<T>* impl() const { return var ? var->get() : nullptr; }
};

/// The leaves of an expression, in slot order (a fixed-size array: no allocation).
template <class E>
using Leaves = std::array<LeafRef<typename E::value_type>, static_cast<std::size_t>(E::leaves)>;

template <class E>
Leaves<E> collect_leaves(const E& e) {
    Leaves<E> out;
    LeafRef<typename E::value_type>* cursor = out.data();
    e.collect(cursor);
    return out;
}

template <class V> struct Rec0 { V y; };
template <class V, class RA> struct Rec1 { V y; RA a; };
template <class V, class RA, class RB> struct Rec2 { V y; RA a; RB b; };
template <class V, class RA, class RB, class RC> struct Rec3 { V y; RA a; RB b; RC c; };

struct NodeBase {
    using is_expression_tag = void;
};

/// A Var leaf: its gradient flows back to the Var.
template <Real T>
struct VarLeaf : NodeBase {
    using value_type = T;
    static constexpr int leaves = 1;
    static constexpr bool has_var = true;
    static constexpr bool has_grad_path = true;  ///< a gradient can reach a Var through it
    Var<T> v;
    void collect(LeafRef<T>*& out) const { *out++ = {&v.value(), &v.impl(), {}}; }
    template <int Off, class C> auto eval(const C& c) const { return c.template load<Off>(); }
    template <int Off, class C> auto record(const C& c) const { return Rec0<typename C::V>{c.template load<Off>()}; }
    template <int Off, class C, class R> void backprop(C& c, const R&, const typename C::V& g) const {
        c.template accumulate<Off>(g);
    }
};

/// A Tensor leaf: a constant.
template <Real T>
struct TensorLeaf : NodeBase {
    using value_type = T;
    static constexpr int leaves = 1;
    static constexpr bool has_var = false;
    static constexpr bool has_grad_path = false;
    Tensor<T> t;
    void collect(LeafRef<T>*& out) const { *out++ = {&t, nullptr, {}}; }
    template <int Off, class C> auto eval(const C& c) const { return c.template load<Off>(); }
    template <int Off, class C> auto record(const C& c) const { return Rec0<typename C::V>{c.template load<Off>()}; }
    template <int Off, class C, class R> void backprop(C&, const R&, const typename C::V&) const {}
};

/// A scalar constant broadcast to every element.
template <Real T>
struct ScalarLeaf : NodeBase {
    using value_type = T;
    static constexpr int leaves = 0;
    static constexpr bool has_var = false;
    static constexpr bool has_grad_path = false;
    T value;
    void collect(LeafRef<T>*&) const {}
    template <int Off, class C> auto eval(const C& c) const { return c.splat(value); }
    template <int Off, class C> auto record(const C& c) const { return Rec0<typename C::V>{c.splat(value)}; }
    template <int Off, class C, class R> void backprop(C&, const R&, const typename C::V&) const {}
};

template <class Op, class A>
struct Unary : NodeBase {
    using value_type = typename A::value_type;
    static constexpr int leaves = A::leaves;
    static constexpr bool has_var = A::has_var;
    static constexpr bool has_grad_path = Op::differentiable && A::has_grad_path;
    Op op;
    A a;
    void collect(LeafRef<value_type>*& out) const { a.collect(out); }
    template <int Off, class C> auto eval(const C& c) const { return un(op, a.template eval<Off>(c)); }
    template <int Off, class C> auto record(const C& c) const {
        auto ra = a.template record<Off>(c);
        typename C::V y = un(op, ra.y);
        return Rec1<typename C::V, decltype(ra)>{y, ra};
    }
    template <int Off, class C, class R> void backprop(C& c, const R& r, const typename C::V& g) const {
        if constexpr (Op::differentiable) {
            if (c.needs(Off, Off + A::leaves)) a.template backprop<Off>(c, r.a, rule_df(op, r.a.y, r.y, g));
        }
    }
};

template <class Op, class A, class B>
struct Binary : NodeBase {
    using value_type = typename A::value_type;
    static constexpr int leaves = A::leaves + B::leaves;
    static constexpr bool has_var = A::has_var || B::has_var;
    static constexpr bool has_grad_path = Op::differentiable && (A::has_grad_path || B::has_grad_path);
    static constexpr int OffB = A::leaves;
    Op op;
    A a;
    B b;
    void collect(LeafRef<value_type>*& out) const { a.collect(out), b.collect(out); }
    template <int Off, class C> auto eval(const C& c) const {
        return bin(op, a.template eval<Off>(c), b.template eval<Off + OffB>(c));
    }
    template <int Off, class C> auto record(const C& c) const {
        auto ra = a.template record<Off>(c);
        auto rb = b.template record<Off + OffB>(c);
        typename C::V y = bin(op, ra.y, rb.y);
        return Rec2<typename C::V, decltype(ra), decltype(rb)>{y, ra, rb};
    }
    template <int Off, class C, class R> void backprop(C& c, const R& r, const typename C::V& g) const {
        if constexpr (Op::differentiable) {
            if (c.needs(Off, Off + A::leaves)) a.template backprop<Off>(c, r.a, rule_da(op, r.a.y, r.b.y, r.y, g));
            if (c.needs(Off + OffB, Off + leaves)) b.template backprop<Off + OffB>(c, r.b, rule_db(op, r.a.y, r.b.y, r.y, g));
        }
    }
};

/// Ternary nodes are `where(mask, a, b)`: the mask (first operand) gets no gradient.
template <class Op, class M, class A, class B>
struct Ternary : NodeBase {
    using value_type = typename A::value_type;
    static constexpr int leaves = M::leaves + A::leaves + B::leaves;
    static constexpr bool has_var = M::has_var || A::has_var || B::has_var;
    static constexpr bool has_grad_path = A::has_grad_path || B::has_grad_path;
    static constexpr int OffA = M::leaves, OffB = M::leaves + A::leaves;
    Op op;
    M m;
    A a;
    B b;
    void collect(LeafRef<value_type>*& out) const { m.collect(out), a.collect(out), b.collect(out); }
    template <int Off, class C> auto eval(const C& c) const {
        using V = typename C::V;
        return V(Vocab<V>::where(nonzero(V(m.template eval<Off>(c))), V(a.template eval<Off + OffA>(c)),
                                 V(b.template eval<Off + OffB>(c))));
    }
    template <int Off, class C> auto record(const C& c) const {
        using V = typename C::V;
        auto rm = m.template record<Off>(c);
        auto ra = a.template record<Off + OffA>(c);
        auto rb = b.template record<Off + OffB>(c);
        V y = Vocab<V>::where(nonzero(rm.y), ra.y, rb.y);
        return Rec3<V, decltype(rm), decltype(ra), decltype(rb)>{y, rm, ra, rb};
    }
    template <int Off, class C, class R> void backprop(C& c, const R& r, const typename C::V& g) const {
        if (c.needs(Off + OffA, Off + OffB)) a.template backprop<Off + OffA>(c, r.b, rule_da(op, r.a.y, r.b.y, r.c.y, r.y, g));
        if (c.needs(Off + OffB, Off + leaves)) b.template backprop<Off + OffB>(c, r.c, rule_db(op, r.a.y, r.b.y, r.c.y, r.y, g));
    }
};

// ---- operands ---------------------------------------------------------------------------
template <class X> struct is_var : std::false_type {};
template <Real T> struct is_var<Var<T>> : std::true_type {};
template <class X> struct is_tensor : std::false_type {};
template <Real T> struct is_tensor<Tensor<T>> : std::true_type {};

/// Anything that can stand in an elementwise expression besides a plain number.
template <class X>
concept Operand = Expression<X> || is_var<std::remove_cvref_t<X>>::value || is_tensor<std::remove_cvref_t<X>>::value;
/// A plain arithmetic value, broadcast to every element.
template <class S>
concept Number = std::is_arithmetic_v<std::remove_cvref_t<S>>;

template <class X> auto as_node(const X& x) {
    if constexpr (Expression<X>) return x;
    else if constexpr (is_var<X>::value) return VarLeaf<typename X::value_type>{{}, x};
    else return TensorLeaf<typename X::value_type>{{}, x};
}
template <class X> using node_t = decltype(as_node(std::declval<const X&>()));

template <class Op, Operand A>
auto make_unary(const Op& op, const A& a) {
    return Unary<Op, node_t<A>>{{}, op, as_node(a)};
}

template <class A, class B>
concept SameScalar = std::same_as<typename std::remove_cvref_t<A>::value_type, typename std::remove_cvref_t<B>::value_type>;

template <class Op, Operand A, Operand B>
auto make_binary(const Op& op, const A& a, const B& b) {
    static_assert(SameScalar<A, B>, "ember: both operands of an elementwise op must have the same scalar type "
                                    "(float or double); convert one of them explicitly");
    return Binary<Op, node_t<A>, node_t<B>>{{}, op, as_node(a), as_node(b)};
}
template <class Op, Operand A, Number S>
auto make_binary(const Op& op, const A& a, S s) {
    using T = typename A::value_type;
    return Binary<Op, node_t<A>, ScalarLeaf<T>>{{}, op, as_node(a), ScalarLeaf<T>{{}, static_cast<T>(s)}};
}
template <class Op, Number S, Operand B>
auto make_binary(const Op& op, S s, const B& b) {
    using T = typename B::value_type;
    return Binary<Op, ScalarLeaf<T>, node_t<B>>{{}, op, ScalarLeaf<T>{{}, static_cast<T>(s)}, as_node(b)};
}

/// The operand type for a `where` branch or a scalar.
template <class T, class X> auto as_node_of(const X& x) {
    if constexpr (Number<X>) return ScalarLeaf<T>{{}, static_cast<T>(x)};
    else return as_node(x);
}

// ---- the public vocabulary of elementwise ops ---------------------------------------------
#define EMBER_BINARY_OPERATOR(SYM, OP)                                                                 \
    template <class A, class B>                                                                        \
        requires((Operand<A> && Operand<B>) || (Operand<A> && Number<B>) || (Number<A> && Operand<B>)) \
    auto operator SYM(const A& a, const B& b) { return make_binary(OP{}, a, b); }
/// Elementwise a + b (operands or one number); builds an expression node, computes nothing.
EMBER_BINARY_OPERATOR(+, AddOp)
/// Elementwise a - b.
EMBER_BINARY_OPERATOR(-, SubOp)
/// Elementwise a * b.
EMBER_BINARY_OPERATOR(*, MulOp)
/// Elementwise a / b.
EMBER_BINARY_OPERATOR(/, DivOp)
/// Elementwise a > b as a mask of 0 and 1 (no gradient).
EMBER_BINARY_OPERATOR(>, GtOp)
/// Elementwise a >= b as a mask of 0 and 1 (no gradient).
EMBER_BINARY_OPERATOR(>=, GeOp)
/// Elementwise a < b as a mask of 0 and 1 (no gradient).
EMBER_BINARY_OPERATOR(<, LtOp)
/// Elementwise a <= b as a mask of 0 and 1 (no gradient).
EMBER_BINARY_OPERATOR(<=, LeOp)
#undef EMBER_BINARY_OPERATOR

#define EMBER_BINARY_FUNCTION(NAME, OP)                                                                \
    template <class A, class B>                                                                        \
        requires((Operand<A> && Operand<B>) || (Operand<A> && Number<B>) || (Number<A> && Operand<B>)) \
    auto NAME(const A& a, const B& b) { return make_binary(OP{}, a, b); }
/// Elementwise minimum, NaN if either operand is NaN; ties send the gradient to `a`.
EMBER_BINARY_FUNCTION(minimum, MinOp)  // elementwise; min(x, axis) is the reduction
/// Elementwise maximum, NaN if either operand is NaN; ties send the gradient to `a`.
EMBER_BINARY_FUNCTION(maximum, MaxOp)
/// Elementwise a == b as a mask of 0 and 1 (no gradient).
EMBER_BINARY_FUNCTION(eq, EqOp)
/// Elementwise a != b as a mask of 0 and 1 (no gradient).
EMBER_BINARY_FUNCTION(ne, NeOp)
#undef EMBER_BINARY_FUNCTION

/// Elementwise -a.
template <Operand A>
auto operator-(const A& a) { return make_unary(NegOp{}, a); }

#define EMBER_UNARY_FUNCTION(NAME, OP) \
    template <Operand A>               \
    auto NAME(const A& a) { return make_unary(OP{}, a); }
/// Elementwise e^a.
EMBER_UNARY_FUNCTION(exp, ExpOp)
/// Elementwise natural logarithm.
EMBER_UNARY_FUNCTION(log, LogOp)
/// Elementwise log(1 + a), accurate for small a.
EMBER_UNARY_FUNCTION(log1p, Log1pOp)
/// Elementwise e^a - 1, accurate for small a.
EMBER_UNARY_FUNCTION(expm1, Expm1Op)
/// Elementwise square root.
EMBER_UNARY_FUNCTION(sqrt, SqrtOp)
/// Elementwise 1 / sqrt(a).
EMBER_UNARY_FUNCTION(rsqrt, RsqrtOp)
/// Elementwise a².
EMBER_UNARY_FUNCTION(square, SquareOp)
/// Elementwise |a|.
EMBER_UNARY_FUNCTION(abs, AbsOp)
/// Elementwise sign: -1, 0 or 1 (no gradient).
EMBER_UNARY_FUNCTION(sign, SignOp)
/// Elementwise tanh.
EMBER_UNARY_FUNCTION(tanh, TanhOp)
/// Elementwise logistic sigmoid 1 / (1 + e^-a), in the overflow-free form.
EMBER_UNARY_FUNCTION(sigmoid, SigmoidOp)
/// Elementwise softplus log(1 + e^a) = max(a, 0) + log1p(e^-|a|).
EMBER_UNARY_FUNCTION(softplus, SoftplusOp)
/// Elementwise log σ(a) = -softplus(-a), exact for large |a|.
EMBER_UNARY_FUNCTION(log_sigmoid, LogSigmoidOp)
/// Elementwise max(a, 0) (NaN stays NaN); the gradient is 0 at a = 0.
EMBER_UNARY_FUNCTION(relu, ReluOp)
#undef EMBER_UNARY_FUNCTION

/// Elementwise a for a > 0, slope·a otherwise.
template <Operand A> auto leaky_relu(const A& a, double slope = 0.01) { return make_unary(LeakyReluOp{{}, slope}, a); }
/// Elementwise a for a > 0, alpha·(e^a - 1) otherwise.
template <Operand A> auto elu(const A& a, double alpha = 1.0) { return make_unary(EluOp{{}, alpha}, a); }
/// Elementwise a clamped to [lo, hi]; the gradient passes where lo <= a <= hi, as in PyTorch.
template <Operand A> auto clamp(const A& a, double lo, double hi) {
    EMBER_CHECK(lo <= hi, "clamp", "lower bound ", lo, " exceeds upper bound ", hi);
    return make_unary(ClampOp{{}, lo, hi}, a);
}
/// Elementwise max(a, lo): clamp with no upper bound (torch.clamp_min).
template <Operand A> auto clamp_min(const A& a, double lo) {
    EMBER_CHECK(!std::isnan(lo), "clamp_min", "the bound is NaN");
    return make_unary(ClampOp{{}, lo, INFINITY}, a);
}
/// Elementwise min(a, hi): clamp with no lower bound (torch.clamp_max).
template <Operand A> auto clamp_max(const A& a, double hi) {
    EMBER_CHECK(!std::isnan(hi), "clamp_max", "the bound is NaN");
    return make_unary(ClampOp{{}, -INFINITY, hi}, a);
}
/// Elementwise a^p for a constant exponent; integer exponents are exact for negative a.
template <Operand A, Number S> auto pow(const A& a, S p) { return make_unary(PowScalarOp{{}, static_cast<double>(p)}, a); }
/// Elementwise a^b for a > 0.
template <Operand A, Operand B> auto pow(const A& a, const B& b) { return make_binary(PowOp{}, a, b); }

/// where(mask, a, b): a where mask != 0 else b; a and b may be operands or numbers.
template <Operand M, class A, class B>
    requires(Operand<A> || Number<A>) && (Operand<B> || Number<B>)
auto where(const M& m, const A& a, const B& b) {
    using T = typename M::value_type;
    auto na = as_node_of<T>(a);
    auto nb = as_node_of<T>(b);
    return Ternary<WhereOp, node_t<M>, decltype(na), decltype(nb)>{{}, WhereOp{}, as_node(m), na, nb};
}

}  // namespace ember::expr

namespace ember {
/// Bring the elementwise vocabulary into ember:: so that argument-dependent lookup on Var and
/// Tensor finds it, and users write ember::exp(x).
using expr::operator+;
using expr::operator-;
using expr::operator*;
using expr::operator/;
using expr::operator>;
using expr::operator>=;
using expr::operator<;
using expr::operator<=;
using expr::minimum;
using expr::maximum;
using expr::eq;
using expr::ne;
using expr::exp;
using expr::log;
using expr::log1p;
using expr::expm1;
using expr::sqrt;
using expr::rsqrt;
using expr::square;
using expr::abs;
using expr::sign;
using expr::tanh;
using expr::sigmoid;
using expr::softplus;
using expr::log_sigmoid;
using expr::relu;
using expr::leaky_relu;
using expr::elu;
using expr::clamp;
using expr::clamp_min;
using expr::clamp_max;
using expr::pow;
using expr::where;
}  // namespace ember
