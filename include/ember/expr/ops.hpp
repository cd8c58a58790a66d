#pragma once
// Every elementwise operation, defined once: its forward `f` on SIMD batches, and its
// derivative rule `df` (unary) or `da`/`db` (binary) written in the vocabulary of
// vocab.hpp, so the same rule drives the fused backward kernel and, over Var, the
// recorded backward that gradients of gradients differentiate. A rule receives the
// operands, the op's output `y` and the incoming gradient `g`, and returns g * ∂y/∂x.
// Forward forms follow the stable primitives of docs/math.md §8.
#include <array>
#include <cmath>
#include <type_traits>

#include "ember/expr/vocab.hpp"

namespace ember::expr {

namespace stable {
// exp(-|x|), shared by the stable sigmoid / softplus / log-sigmoid forms.
template <class B> B exp_neg_abs(const B& x) { return xsimd::exp(-xsimd::abs(x)); }
template <class B> B sigmoid(const B& x) {
    using T = typename B::value_type;
    const B e = exp_neg_abs(x), r = B(T(1)) / (B(T(1)) + e);
    return xsimd::select(x >= B(T(0)), r, e * r);
}
// softplus(x) = max(x,0) + log1p(exp(-|x|))
// max/min that propagate NaN from either operand, as PyTorch does (xsimd's return the
// second operand, which would hide a NaN instead of reporting it).
template <class B> B max_nan(const B& a, const B& b) {
    return xsimd::select(xsimd::isnan(a) | xsimd::isnan(b), a + b, xsimd::max(a, b));
}
template <class B> B min_nan(const B& a, const B& b) {
    return xsimd::select(xsimd::isnan(a) | xsimd::isnan(b), a + b, xsimd::min(a, b));
}
template <class B> B softplus(const B& x) {
    using T = typename B::value_type;
    return xsimd::max(x, B(T(0))) + xsimd::log1p(exp_neg_abs(x));
}
// a^b, with b a batch or one double. xsimd's pow is exp(b·log a), whose relative error grows
// with |b·log a|: in double it stays near 1e-13 over the normal range, but in float it
// reaches 5e-6 (about 80 ulp) at a = 1e15, b = 2.5. So float lanes go through std::pow in
// double and are correctly rounded to a few ulp; that is about ten times slower, and no hot
// loop of ember raises to a power.
template <class B, class E> B pow(const B& a, const E& b) {
    using T = typename B::value_type;
    if constexpr (std::is_same_v<T, float>) {
        std::array<float, B::size> x{};
        a.store_unaligned(x.data());
        if constexpr (std::is_same_v<E, double>) {
            for (float& v : x) v = static_cast<float>(std::pow(static_cast<double>(v), b));
        } else {
            std::array<float, B::size> y{};
            b.store_unaligned(y.data());
            for (std::size_t i = 0; i < B::size; ++i)
                x[i] = static_cast<float>(std::pow(static_cast<double>(x[i]), static_cast<double>(y[i])));
        }
        return B::load_unaligned(x.data());
    } else if constexpr (std::is_same_v<E, double>) {
        return xsimd::pow(a, B(T(b)));
    } else {
        return xsimd::pow(a, b);
    }
}
}  // namespace stable

struct Differentiable { static constexpr bool differentiable = true; };
struct Constant { static constexpr bool differentiable = false; };

// ---- unary ------------------------------------------------------------------------------
struct NegOp : Differentiable {
    static constexpr const char* name = "neg";
    template <class B> B f(const B& x) const { return -x; }
    template <class V> V df(const V&, const V&, const V& g) const { return -g; }
};
struct ExpOp : Differentiable {
    static constexpr const char* name = "exp";
    template <class B> B f(const B& x) const { return xsimd::exp(x); }
    template <class V> V df(const V&, const V& y, const V& g) const { return g * y; }
};
struct LogOp : Differentiable {
    static constexpr const char* name = "log";
    template <class B> B f(const B& x) const { return xsimd::log(x); }
    template <class V> V df(const V& x, const V&, const V& g) const { return g / x; }
};
struct Log1pOp : Differentiable {
    static constexpr const char* name = "log1p";
    template <class B> B f(const B& x) const { return xsimd::log1p(x); }
    template <class V> V df(const V& x, const V&, const V& g) const { return g / (x + scalar_t<V>(1)); }
};
struct Expm1Op : Differentiable {
    static constexpr const char* name = "expm1";
    template <class B> B f(const B& x) const { return xsimd::expm1(x); }
    // exp(x), not y + 1, which cancels for x << 0.
    template <class V> V df(const V& x, const V&, const V& g) const { return g * un(ExpOp{}, x); }
};
struct SqrtOp : Differentiable {
    static constexpr const char* name = "sqrt";
    template <class B> B f(const B& x) const { return xsimd::sqrt(x); }
    template <class V> V df(const V&, const V& y, const V& g) const { return g * scalar_t<V>(0.5) / y; }
};
struct RsqrtOp : Differentiable {
    static constexpr const char* name = "rsqrt";
    template <class B> B f(const B& x) const { return B(typename B::value_type(1)) / xsimd::sqrt(x); }
    template <class V> V df(const V&, const V& y, const V& g) const { return g * scalar_t<V>(-0.5) * y * y * y; }
};
struct SquareOp : Differentiable {
    static constexpr const char* name = "square";
    template <class B> B f(const B& x) const { return x * x; }
    template <class V> V df(const V& x, const V&, const V& g) const { return g * scalar_t<V>(2) * x; }
};
struct SignOp : Constant {
    static constexpr const char* name = "sign";
    template <class B> B f(const B& x) const {
        using T = typename B::value_type;
        return xsimd::select(x > B(T(0)), B(T(1)), xsimd::select(x < B(T(0)), B(T(-1)), B(T(0))));
    }
};
struct AbsOp : Differentiable {
    static constexpr const char* name = "abs";
    template <class B> B f(const B& x) const { return xsimd::abs(x); }
    template <class V> V df(const V& x, const V&, const V& g) const { return g * un(SignOp{}, x); }
};
struct TanhOp;
// sech²x = 1 - tanh²x, the derivative of tanh, formed as 4e / (1 + e)² with e = exp(-2|x|):
// 1 - y² keeps no correct digit once tanh rounds to ±1 (|x| > 19 in double), this form is
// accurate to a few ulp wherever the result is a normal number. Its own derivative,
// -2 tanh(x) sech²x, has no cancellation either.
struct Sech2Op : Differentiable {
    static constexpr const char* name = "sech2";
    template <class B> B f(const B& x) const {
        using T = typename B::value_type;
        const B e = xsimd::exp(B(T(-2)) * xsimd::abs(x)), d = B(T(1)) + e;
        return B(T(4)) * e / (d * d);
    }
    template <class V> V df(const V& x, const V& y, const V& g) const;  // needs TanhOp, below
};
struct TanhOp : Differentiable {
    static constexpr const char* name = "tanh";
    template <class B> B f(const B& x) const { return xsimd::tanh(x); }
    template <class V> V df(const V& x, const V&, const V& g) const { return g * un(Sech2Op{}, x); }
};
template <class V> V Sech2Op::df(const V& x, const V& y, const V& g) const {
    return g * scalar_t<V>(-2) * un(TanhOp{}, x) * y;
}
// σ'(x) = σ(x)σ(-x) = sech²(x/2) / 4: exact on both tails, where y(1 - y) loses every digit
// for x > 20 (y rounds to 1). Softplus' second derivative and log-sigmoid's are this too.
struct SigmoidOp : Differentiable {
    static constexpr const char* name = "sigmoid";
    template <class B> B f(const B& x) const { return stable::sigmoid(x); }
    template <class V> V df(const V& x, const V&, const V& g) const {
        return g * scalar_t<V>(0.25) * un(Sech2Op{}, V(x * scalar_t<V>(0.5)));
    }
};
struct SoftplusOp : Differentiable {
    static constexpr const char* name = "softplus";
    template <class B> B f(const B& x) const { return stable::softplus(x); }
    template <class V> V df(const V& x, const V&, const V& g) const { return g * un(SigmoidOp{}, x); }
};
// log σ(x) = -softplus(-x) = min(x,0) - log1p(exp(-|x|)); d/dx = σ(-x), exact for large x.
struct LogSigmoidOp : Differentiable {
    static constexpr const char* name = "log_sigmoid";
    template <class B> B f(const B& x) const {
        using T = typename B::value_type;
        return xsimd::min(x, B(T(0))) - xsimd::log1p(stable::exp_neg_abs(x));
    }
    template <class V> V df(const V& x, const V&, const V& g) const { return g * un(SigmoidOp{}, un(NegOp{}, x)); }
};
struct ReluOp : Differentiable {
    static constexpr const char* name = "relu";
    template <class B> B f(const B& x) const { return stable::max_nan(x, B(typename B::value_type(0))); }
    template <class V> V df(const V& x, const V&, const V& g) const {
        const V zero = cst(scalar_t<V>(0), x);
        return choose(gt(x, zero), g, zero);
    }
};
struct LeakyReluOp : Differentiable {
    static constexpr const char* name = "leaky_relu";
    double slope = 0.01;
    template <class B> B f(const B& x) const {
        using T = typename B::value_type;
        return xsimd::select(x > B(T(0)), x, x * B(T(slope)));
    }
    template <class V> V df(const V& x, const V&, const V& g) const {
        return choose(gt(x, cst(scalar_t<V>(0), x)), g, V(g * scalar_t<V>(slope)));
    }
};
struct EluOp : Differentiable {
    static constexpr const char* name = "elu";
    double alpha = 1.0;
    template <class B> B f(const B& x) const {
        using T = typename B::value_type;
        return xsimd::select(x > B(T(0)), x, B(T(alpha)) * xsimd::expm1(x));
    }
    // On the negative branch α·exp(x), not y + α, which cancels to nothing for x << 0. The
    // exponent is x only where x < 0 (else 0), so that the branch not taken cannot overflow
    // (an infinity there would become NaN when a second derivative multiplies it by a zero
    // mask) and so that at the kink x = 0 the first derivative is α and the second 0, as
    // in PyTorch.
    template <class V> V df(const V& x, const V&, const V& g) const {
        const V zero = cst(scalar_t<V>(0), x);
        const V negative = choose(ge(x, zero), zero, x);
        return choose(gt(x, zero), g, V(g * scalar_t<V>(alpha) * un(ExpOp{}, negative)));
    }
};
// Gradient passes where lo <= x <= hi, as in PyTorch.
struct ClampOp : Differentiable {
    static constexpr const char* name = "clamp";
    double lo, hi;
    template <class B> B f(const B& x) const {
        using T = typename B::value_type;
        return stable::min_nan(stable::max_nan(x, B(T(lo))), B(T(hi)));
    }
    template <class V> V df(const V& x, const V&, const V& g) const {
        using T = scalar_t<V>;
        const V zero = cst(T(0), x);
        return choose(ge(x, cst(T(lo), x)), choose(ge(cst(T(hi), x), x), g, zero), zero);
    }
};
// x^p for a constant exponent; integer exponents are exact for negative x.
struct PowScalarOp : Differentiable {
    static constexpr const char* name = "pow";
    double p;
    template <class B> B f(const B& x) const {
        using T = typename B::value_type;
        if (p == 0) return B(T(1));
        if (p == 1) return x;
        if (p == 2) return x * x;
        if (p == 0.5) return xsimd::sqrt(x);
        if (std::floor(p) != p) return stable::pow(x, p);  // NaN for x < 0, as std::pow
        const B mag = stable::pow(xsimd::abs(x), p);
        const bool odd = std::fmod(std::fabs(p), 2.0) == 1.0;
        return odd ? xsimd::select(x < B(T(0)), -mag, mag) : mag;
    }
    template <class V> V df(const V& x, const V&, const V& g) const {
        if (p == 0) return g * scalar_t<V>(0);
        return g * scalar_t<V>(p) * un(PowScalarOp{{}, p - 1}, x);
    }
};

// ---- binary -----------------------------------------------------------------------------
struct AddOp : Differentiable {
    static constexpr const char* name = "add";
    template <class B> B f(const B& a, const B& b) const { return a + b; }
    template <class V> V da(const V&, const V&, const V&, const V& g) const { return g; }
    template <class V> V db(const V&, const V&, const V&, const V& g) const { return g; }
};
struct SubOp : Differentiable {
    static constexpr const char* name = "sub";
    template <class B> B f(const B& a, const B& b) const { return a - b; }
    template <class V> V da(const V&, const V&, const V&, const V& g) const { return g; }
    template <class V> V db(const V&, const V&, const V&, const V& g) const { return -g; }
};
struct MulOp : Differentiable {
    static constexpr const char* name = "mul";
    template <class B> B f(const B& a, const B& b) const { return a * b; }
    template <class V> V da(const V&, const V& b, const V&, const V& g) const { return g * b; }
    template <class V> V db(const V& a, const V&, const V&, const V& g) const { return g * a; }
};
struct DivOp : Differentiable {
    static constexpr const char* name = "div";
    template <class B> B f(const B& a, const B& b) const { return a / b; }
    template <class V> V da(const V&, const V& b, const V&, const V& g) const { return g / b; }
    template <class V> V db(const V&, const V& b, const V& y, const V& g) const { return -(g * y) / b; }
};
// The gradient of the operand that wins; at a tie half to each, as in PyTorch.
template <class V> V winner_gradient(const V& mine, const V& other, const V& g) {
    return choose(gt(mine, other), g, choose(ge(mine, other), V(g * scalar_t<V>(0.5)), cst(scalar_t<V>(0), g)));
}
struct MinOp : Differentiable {
    static constexpr const char* name = "min";
    template <class B> B f(const B& a, const B& b) const { return stable::min_nan(a, b); }
    template <class V> V da(const V& a, const V& b, const V&, const V& g) const { return winner_gradient(b, a, g); }
    template <class V> V db(const V& a, const V& b, const V&, const V& g) const { return winner_gradient(a, b, g); }
};
struct MaxOp : Differentiable {
    static constexpr const char* name = "max";
    template <class B> B f(const B& a, const B& b) const { return stable::max_nan(a, b); }
    template <class V> V da(const V& a, const V& b, const V&, const V& g) const { return winner_gradient(a, b, g); }
    template <class V> V db(const V& a, const V& b, const V&, const V& g) const { return winner_gradient(b, a, g); }
};
// a^b for a > 0 (elementwise exponent).
struct PowOp : Differentiable {
    static constexpr const char* name = "pow";
    template <class B> B f(const B& a, const B& b) const { return stable::pow(a, b); }
    template <class V> V da(const V& a, const V& b, const V&, const V& g) const {
        return g * b * bin(PowOp{}, a, V(b - scalar_t<V>(1)));
    }
    template <class V> V db(const V& a, const V&, const V& y, const V& g) const { return g * y * un(LogOp{}, a); }
};

// Comparisons give masks of 0 and 1; they carry no gradient.
#define EMBER_COMPARISON(NAME, SYMBOL)                                                  \
    struct NAME : Constant {                                                            \
        static constexpr const char* name = #SYMBOL;                                    \
        template <class B> B f(const B& a, const B& b) const {                          \
            using T = typename B::value_type;                                           \
            return xsimd::select(a SYMBOL b, B(T(1)), B(T(0)));                         \
        }                                                                               \
    };
EMBER_COMPARISON(GtOp, >)
EMBER_COMPARISON(GeOp, >=)
EMBER_COMPARISON(LtOp, <)
EMBER_COMPARISON(LeOp, <=)
EMBER_COMPARISON(EqOp, ==)
EMBER_COMPARISON(NeOp, !=)
#undef EMBER_COMPARISON

// ---- ternary ----------------------------------------------------------------------------
// where(mask, a, b): a where mask != 0, else b; the mask carries no gradient.
struct WhereOp : Differentiable {
    static constexpr const char* name = "where";
    template <class B> B f(const B& m, const B& a, const B& b) const {
        return xsimd::select(m != B(typename B::value_type(0)), a, b);
    }
    template <class V> V da(const V& m, const V&, const V&, const V&, const V& g) const {
        return choose(nonzero(m), g, cst(scalar_t<V>(0), g));
    }
    template <class V> V db(const V& m, const V&, const V&, const V&, const V& g) const {
        return choose(nonzero(m), cst(scalar_t<V>(0), g), g);
    }
};

}  // namespace ember::expr
