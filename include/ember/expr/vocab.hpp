#pragma once
// The small vocabulary that derivative rules are written in. A rule such as
//   df(x, y, g) = g * un(SigmoidOp{}, x)
// is instantiated twice: over SIMD batches inside the fused backward kernel, and over Var
// when gradients must themselves be differentiable (create_graph). Vocab<V> supplies the
// few things that differ between the two: applying an op, masks and selection.
#include "ember/core/simd.hpp"

namespace ember::expr {

template <class V>
struct Vocab;  // specialised for xsimd batches here and for Var in autodiff/expr_node.hpp

template <class T, class A>
struct Vocab<xsimd::batch<T, A>> {
    using V = xsimd::batch<T, A>;
    using scalar = T;
    template <class Op> static V unary(const Op& op, const V& x) { return op.f(x); }
    template <class Op> static V binary(const Op& op, const V& a, const V& b) { return op.f(a, b); }
    static V constant(T v, const V&) { return V(v); }
    static auto gt(const V& a, const V& b) { return a > b; }
    static auto ge(const V& a, const V& b) { return a >= b; }
    static auto nonzero(const V& m) { return m != V(T(0)); }
    template <class M> static V where(const M& m, const V& a, const V& b) { return xsimd::select(m, a, b); }
};

template <class V> using scalar_t = typename Vocab<V>::scalar;

template <class Op, class V> V un(const Op& op, const V& x) { return Vocab<V>::unary(op, x); }
template <class Op, class V> V bin(const Op& op, const V& a, const V& b) { return Vocab<V>::binary(op, a, b); }
template <class V> V cst(scalar_t<V> v, const V& like) { return Vocab<V>::constant(v, like); }
template <class V> auto gt(const V& a, const V& b) { return Vocab<V>::gt(a, b); }
template <class V> auto ge(const V& a, const V& b) { return Vocab<V>::ge(a, b); }
template <class V> auto nonzero(const V& m) { return Vocab<V>::nonzero(m); }
template <class M, class V> V choose(const M& m, const V& a, const V& b) { return Vocab<V>::where(m, a, b); }

// The nodes of an expression apply an op's derivative rule through these rather than
// calling op.df / op.da / op.db themselves. Over batches they are the rule itself; over Var
// (autodiff/expr_node.hpp) each is one function per op, so that the graph nodes a rule
// records are compiled once per op, not again inside every expression that uses it (and,
// with ember::compiled, not in the user's program at all).
template <class Op, class V> V rule_df(const Op& op, const V& x, const V& y, const V& g) { return op.df(x, y, g); }
template <class Op, class V> V rule_da(const Op& op, const V& a, const V& b, const V& y, const V& g) {
    return op.da(a, b, y, g);
}
template <class Op, class V> V rule_db(const Op& op, const V& a, const V& b, const V& y, const V& g) {
    return op.db(a, b, y, g);
}
template <class Op, class V> V rule_da(const Op& op, const V& m, const V& a, const V& b, const V& y, const V& g) {
    return op.da(m, a, b, y, g);
}
template <class Op, class V> V rule_db(const Op& op, const V& m, const V& a, const V& b, const V& y, const V& g) {
    return op.db(m, a, b, y, g);
}

}  // namespace ember::expr
