#pragma once
/// \file
/// f-divergences and their variational (Fenchel-dual) bounds, as used by f-GAN (Nowozin,
/// Cseke & Tomioka 2016; docs/math.md §4).
///
///     D_f(P||Q) = ∫ q(x) f(p(x)/q(x)) dx  >=  sup_T E_P[T(x)] - E_Q[f*(T(x))],
///
/// f convex with f(1) = 0, f* its convex conjugate. The bound is tight at T*(x) = f'(p/q),
/// because f*(f'(u)) = u f'(u) - f(u) (Fenchel-Young with equality), so E_P[T*] - E_Q[f*(T*)]
/// = E_Q[(p/q) f'(p/q) - f*(f'(p/q))] = E_Q[f(p/q)]. The critic outputs an unconstrained v;
/// the output activation T = g_f(v) keeps T inside the domain of f*.
///
/// Each divergence is one small struct (adding a divergence means adding one struct and one
/// entry in the `All` list at the bottom):
///
///     name, title             short name for flags ("kl") and its full name;
///     domain                  the domain of f* (where the bound is finite);
///     f(u), f_prime(u)        double, for references and tests: f and T* = f'(u);
///     activation_inverse(t)   double, v with g_f(v) = t (so tests can build v* = g_f⁻¹(T*));
///     activation(v)           g_f, on any Var / Tensor / expression (lazily, fusable);
///     f_star(t)               f*, on a Var / Tensor / expression; checks t is in the domain
///                             and throws ember::Error naming the first value outside it;
///     f_star_activation(v)    f*(g_f(v)) in a closed form derived below, stable for every v:
///                             this, not f_star(activation(v)), is what the losses use.
///
/// | name       | f(u)                               | f*(t)           | g_f(v)          | domain      |
/// | kl         | u log u                            | exp(t-1)        | v               | R           |
/// | reverse_kl | -log u                             | -1 - log(-t)    | -exp(-v)        | t < 0       |
/// | pearson    | (u-1)²                             | t²/4 + t        | v               | R           |
/// | neyman     | (1-u)²/u                           | 2 - 2√(1-t)     | 1 - exp(-v)     | t < 1       |
/// | hellinger  | (√u-1)²                            | t/(1-t)         | 1 - exp(-v)     | t < 1       |
/// | js         | -(u+1)log((1+u)/2) + u log u       | -log(2 - exp t) | log 2 - sp(-v)  | t < log 2   |
/// | gan        | u log u - (u+1)log(u+1)            | -log(1 - exp t) | -sp(-v)         | t < 0       |
/// | tv         | ½|u-1|                             | t               | ½ tanh v        | |t| <= ½    |
///
/// Note on js: with this f (the f-GAN table's), Σ q f(p/q) = KL(P||M) + KL(Q||M) = 2·JSD(P||Q)
/// with M = (P+Q)/2, i.e. twice the Jensen-Shannon divergence; f and f* above are exact
/// conjugates of each other. Likewise gan gives 2·JSD(P||Q) - log 4, the minimax GAN value
/// at the optimal discriminator.
#include <cmath>
#include <concepts>
#include <limits>
#include <numbers>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/ops/reduce.hpp"

/// The f-divergence family: each divergence's generator f, conjugate f*, output activation
/// and domain, the variational bound and the f-GAN losses.
namespace ember::fdiv {

/// An interval of the real line: the domain of a conjugate f*.
struct Domain {
    /// Lower end (-infinity when unbounded below).
    double lo, hi;  ///< upper end (+infinity when unbounded above)
    /// Whether the lower end belongs to the interval.
    bool lo_closed, hi_closed;  ///< whether the upper end belongs to the interval
    const char* text;  ///< e.g.\ "t < log 2"
    /// Whether t lies in the interval (false for NaN).
    constexpr bool contains(double t) const {
        return (lo_closed ? t >= lo : t > lo) && (hi_closed ? t <= hi : t < hi);  // false for NaN
    }
};

namespace detail {
inline constexpr double inf = std::numeric_limits<double>::infinity();
inline constexpr double log2 = std::numbers::ln2;

// A Var or Tensor from a Var, Tensor or expression (expressions are evaluated).
template <class X>
auto concrete(const X& x) {
    if constexpr (expr::Expression<X>) return ember::eval(x);
    else return x;
}

template <class Div, Real T>
void check_domain(const Tensor<T>& t) {
    const Tensor<T> c = t.contiguous();
    for (Index i = 0; i < c.numel(); ++i) {
        const double v = static_cast<double>(c.data()[i]);
        EMBER_CHECK(Div::domain.contains(v), "f_star", "t = ", v, " (element ", i, " of a tensor of shape ",
                    c.shape().str(), ") is outside the domain ", Div::domain.text, " of f* for the '", Div::name,
                    "' divergence; map critic outputs through activation(v) first, or use f_star_activation(v)");
    }
}

// t as a Var or Tensor, after checking that every value lies in Div's domain.
template <class Div, class X>
auto in_domain(const X& t) {
    auto c = concrete(t);
    if constexpr (expr::is_var<decltype(c)>::value) check_domain<Div>(c.value());
    else check_domain<Div>(c);
    return c;
}
}  // namespace detail

/// Kullback-Leibler, KL(P||Q) = ∫ p log(p/q).
struct KL {
    /// Short name, for flags: "kl".
    static constexpr const char* name = "kl";
    /// Full name.
    static constexpr const char* title = "Kullback-Leibler";
    /// Domain of f*: all of R.
    static constexpr Domain domain{-detail::inf, detail::inf, false, false, "t in R"};
    static double f(double u) { return u == 0 ? 0.0 : u * std::log(u); }  ///< 0 log 0 = 0
    /// f'(u) = log u + 1, the optimal critic T* at u = p/q.
    static double f_prime(double u) { return std::log(u) + 1; }
    /// v with g_f(v) = t: t itself.
    static double activation_inverse(double t) { return t; }
    /// g_f(v) = v, on a Var, Tensor or expression.
    template <class X> static auto activation(const X& v) { return v; }
    /// f*(t) = exp(t - 1); throws Error if t leaves the domain.
    template <class X> static auto f_star(const X& t) { return exp(detail::in_domain<KL>(t) - 1.0); }
    /// f*(g(v)) = exp(v - 1): no cancellation; it overflows only where e^{v-1} does.
    template <class X> static auto f_star_activation(const X& v) { return exp(v - 1.0); }
};

/// Reverse KL, KL(Q||P) = ∫ q log(q/p).
struct ReverseKL {
    /// Short name, for flags: "reverse_kl".
    static constexpr const char* name = "reverse_kl";
    /// Full name.
    static constexpr const char* title = "reverse Kullback-Leibler";
    /// Domain of f*: t < 0.
    static constexpr Domain domain{-detail::inf, 0.0, false, false, "t < 0"};
    /// f(u) = -log u.
    static double f(double u) { return -std::log(u); }
    /// f'(u) = -1/u.
    static double f_prime(double u) { return -1 / u; }
    static double activation_inverse(double t) { return -std::log(-t); }  ///< t = -e^{-v}
    /// g_f(v) = -exp(-v).
    template <class X> static auto activation(const X& v) { return -exp(-v); }
    /// f*(t) = -1 - log(-t); throws Error if t leaves the domain.
    template <class X> static auto f_star(const X& t) { return -1.0 - log(-detail::in_domain<ReverseKL>(t)); }
    /// f*(-e^{-v}) = -1 - log(e^{-v}) = v - 1: exact for every v (no exp, no log).
    template <class X> static auto f_star_activation(const X& v) { return v - 1.0; }
};

/// Pearson χ², ∫ (p - q)²/q.
struct Pearson {
    /// Short name, for flags: "pearson".
    static constexpr const char* name = "pearson";
    /// Full name.
    static constexpr const char* title = "Pearson chi-squared";
    /// Domain of f*: all of R.
    static constexpr Domain domain{-detail::inf, detail::inf, false, false, "t in R"};
    /// f(u) = (u - 1)².
    static double f(double u) { return (u - 1) * (u - 1); }
    /// f'(u) = 2(u - 1).
    static double f_prime(double u) { return 2 * (u - 1); }
    /// v with g_f(v) = t: t itself.
    static double activation_inverse(double t) { return t; }
    /// g_f(v) = v.
    template <class X> static auto activation(const X& v) { return v; }
    /// f*(t) = t²/4 + t; throws Error if t leaves the domain.
    template <class X> static auto f_star(const X& t) {
        const auto c = detail::in_domain<Pearson>(t);
        return 0.25 * square(c) + c;
    }
    /// f*(v) = v²/4 + v, a polynomial.
    template <class X> static auto f_star_activation(const X& v) { return 0.25 * square(v) + v; }
};

/// Neyman χ², ∫ (q - p)²/p.
struct Neyman {
    /// Short name, for flags: "neyman".
    static constexpr const char* name = "neyman";
    /// Full name.
    static constexpr const char* title = "Neyman chi-squared";
    /// Domain of f*: t < 1.
    static constexpr Domain domain{-detail::inf, 1.0, false, false, "t < 1"};
    /// f(u) = (1 - u)²/u.
    static double f(double u) { return (1 - u) * (1 - u) / u; }
    /// f'(u) = 1 - 1/u².
    static double f_prime(double u) { return 1 - 1 / (u * u); }
    static double activation_inverse(double t) { return -std::log1p(-t); }  ///< t = 1 - e^{-v}
    /// 1 - e^{-v} as -expm1(-v): accurate near v = 0, where 1 - e^{-v} cancels.
    template <class X> static auto activation(const X& v) { return -expm1(-v); }
    /// f*(t) = 2 - 2√(1 - t); throws Error if t leaves the domain.
    template <class X> static auto f_star(const X& t) { return 2.0 - 2.0 * sqrt(1.0 - detail::in_domain<Neyman>(t)); }
    /// 1 - g(v) = e^{-v}, so f*(g(v)) = 2 - 2 e^{-v/2} = -2 expm1(-v/2): no 1 - t rounding to
    /// 0 (t -> 1 for large v) and no cancellation near v = 0.
    template <class X> static auto f_star_activation(const X& v) { return -2.0 * expm1(-0.5 * v); }
};

/// Squared Hellinger, ∫ (√p - √q)².
struct Hellinger {
    /// Short name, for flags: "hellinger".
    static constexpr const char* name = "hellinger";
    /// Full name.
    static constexpr const char* title = "squared Hellinger";
    /// Domain of f*: t < 1.
    static constexpr Domain domain{-detail::inf, 1.0, false, false, "t < 1"};
    /// f(u) = (√u - 1)².
    static double f(double u) { return (std::sqrt(u) - 1) * (std::sqrt(u) - 1); }
    /// f'(u) = 1 - 1/√u.
    static double f_prime(double u) { return 1 - 1 / std::sqrt(u); }
    static double activation_inverse(double t) { return -std::log1p(-t); }  ///< t = 1 - e^{-v}
    /// g_f(v) = 1 - e^{-v}, as -expm1(-v).
    template <class X> static auto activation(const X& v) { return -expm1(-v); }
    /// f*(t) = t/(1 - t); throws Error if t leaves the domain.
    template <class X> static auto f_star(const X& t) {
        const auto c = detail::in_domain<Hellinger>(t);
        return c / (1.0 - c);
    }
    /// 1 - g(v) = e^{-v}, so f*(g(v)) = (1 - e^{-v}) / e^{-v} = e^v - 1 = expm1(v): no
    /// division by a 1 - t that rounds to 0.
    template <class X> static auto f_star_activation(const X& v) { return expm1(v); }
};

/// Jensen-Shannon as in the f-GAN table (Σ q f(p/q) = 2·JSD; see the file comment).
struct JensenShannon {
    /// Short name, for flags: "js".
    static constexpr const char* name = "js";
    /// Full name.
    static constexpr const char* title = "Jensen-Shannon";
    /// Domain of f*: t < log 2.
    static constexpr Domain domain{-detail::inf, detail::log2, false, false, "t < log 2"};
    /// f(u) = -(u + 1) log((1 + u)/2) + u log u.
    static double f(double u) { return -(u + 1) * std::log((1 + u) / 2) + (u == 0 ? 0.0 : u * std::log(u)); }
    /// f'(u) = log(2u/(1 + u)).
    static double f_prime(double u) { return std::log(2 * u / (1 + u)); }
    /// t = log 2 - sp(-v)  <=>  e^{-v} = 2e^{-t} - 1.
    static double activation_inverse(double t) { return -std::log(2 * std::exp(-t) - 1); }
    /// log 2 - sp(-v) = log 2 + log σ(v) (log_sigmoid is the stable form of -sp(-v)).
    template <class X> static auto activation(const X& v) { return detail::log2 + log_sigmoid(v); }
    /// f*(t) = -log(2 - e^t); throws Error if t leaves the domain.
    template <class X> static auto f_star(const X& t) { return -log(2.0 - exp(detail::in_domain<JensenShannon>(t))); }
    /// e^{g(v)} = 2 e^{-sp(-v)} = 2σ(v), so 2 - e^{g(v)} = 2(1 - σ(v)) = 2σ(-v) and
    /// f*(g(v)) = -log 2 - log σ(-v) = sp(v) - log 2. The naive form takes the log of
    /// 2 - e^t, which rounds to 0 once σ(v) rounds to 1 (v > 17 in double, v > 9 in float).
    template <class X> static auto f_star_activation(const X& v) { return softplus(v) - detail::log2; }
};

/// The GAN divergence, 2·JSD(P||Q) - log 4 (the minimax value at the optimal discriminator).
/// Its f is not normalised: f(1) = -log 4, the value for P = Q, so it is the only member
/// of the family that is negative (down to -log 4) rather than >= 0.
struct GAN {
    /// Short name, for flags: "gan".
    static constexpr const char* name = "gan";
    /// Full name.
    static constexpr const char* title = "GAN";
    /// Domain of f*: t < 0.
    static constexpr Domain domain{-detail::inf, 0.0, false, false, "t < 0"};
    /// f(u) = u log u - (u + 1) log(u + 1).
    static double f(double u) { return (u == 0 ? 0.0 : u * std::log(u)) - (u + 1) * std::log(u + 1); }
    /// f'(u) = log(u/(u + 1)).
    static double f_prime(double u) { return std::log(u / (u + 1)); }
    /// t = -sp(-v) = log σ(v)  <=>  e^{-t} = 1 + e^{-v}  <=>  v = -log(expm1(-t)).
    static double activation_inverse(double t) { return -std::log(std::expm1(-t)); }
    /// g_f(v) = -sp(-v) = log σ(v).
    template <class X> static auto activation(const X& v) { return log_sigmoid(v); }
    /// 1 - e^t as -expm1(t), accurate as t -> 0⁻.
    template <class X> static auto f_star(const X& t) { return -log(-expm1(detail::in_domain<GAN>(t))); }
    /// e^{g(v)} = σ(v), so 1 - e^{g(v)} = σ(-v) and f*(g(v)) = -log σ(-v) = sp(v): the
    /// naive form takes the log of 1 - σ(v), which rounds to 0 for large v.
    template <class X> static auto f_star_activation(const X& v) { return softplus(v); }
};

/// Total variation, ½ ∫ |p - q|.
struct TotalVariation {
    /// Short name, for flags: "tv".
    static constexpr const char* name = "tv";
    /// Full name.
    static constexpr const char* title = "total variation";
    /// Domain of f*: |t| <= 1/2.
    static constexpr Domain domain{-0.5, 0.5, true, true, "|t| <= 1/2"};
    /// f(u) = ½|u - 1|.
    static double f(double u) { return 0.5 * std::fabs(u - 1); }
    /// ½ sign(u - 1); at u = 1 every value in [-½, ½] is a subgradient, 0 is taken.
    static double f_prime(double u) { return u > 1 ? 0.5 : (u < 1 ? -0.5 : 0.0); }
    /// atanh(2t); ±∞ at the boundary t = ±½, which a finite critic output only approaches
    /// (in double ½ tanh(v) rounds to ±½ for |v| >= 19).
    static double activation_inverse(double t) { return std::atanh(2 * t); }
    /// g_f(v) = ½ tanh v.
    template <class X> static auto activation(const X& v) { return 0.5 * tanh(v); }
    /// f*(t) = t; throws Error if t leaves the domain.
    template <class X> static auto f_star(const X& t) {
        const auto c = detail::in_domain<TotalVariation>(t);
        return c + 0.0;  // f*(t) = t on the domain (an expression, like the others)
    }
    /// f*(g(v)) = g(v) = ½ tanh v.
    template <class X> static auto f_star_activation(const X& v) { return 0.5 * tanh(v); }
};

/// Every divergence, in the order flags and help texts list them.
using All = std::tuple<KL, ReverseKL, Pearson, Neyman, Hellinger, JensenShannon, GAN, TotalVariation>;

template <class D>
concept Divergence = requires(double u) {
    { D::name } -> std::convertible_to<const char*>;
    { D::f(u) } -> std::convertible_to<double>;
    { D::f_prime(u) } -> std::convertible_to<double>;
    { D::activation_inverse(u) } -> std::convertible_to<double>;
    { D::domain.contains(u) } -> std::convertible_to<bool>;
};

namespace detail {
template <Real T>
void check_outputs(const Var<T>& v, const char* op, const char* what) {
    EMBER_CHECK(v.defined() && v.numel() > 0, op, what, " must be a non-empty tensor of critic outputs, got ",
                v.defined() ? v.shape().str() : std::string("(undefined)"));
}
}  // namespace detail

/// The variational lower bound E_P[g_f(v_p)] - E_Q[f*(g_f(v_q))] on D_f(P||Q), from critic
/// outputs v_p on samples of P and v_q on samples of Q (any shapes; batch means).
///
///     Var<float> d_hat = fdiv::variational_bound<fdiv::KL>(T(x), T(G(z)));
template <Divergence Div, Real T>
Var<T> variational_bound(const Var<T>& v_p, const Var<T>& v_q) {
    detail::check_outputs(v_p, "fdiv::variational_bound", "v_p");
    detail::check_outputs(v_q, "fdiv::variational_bound", "v_q");
    return Var<T>(mean(Var<T>(Div::activation(v_p))) - mean(Var<T>(Div::f_star_activation(v_q))));
}

/// The critic's loss, to minimise: -(E_P[g_f(v_p)] - E_Q[f*(g_f(v_q))]); at its minimum the
/// negated loss is D_f(P||Q). Compute v_q on detached generator samples.
///
///     Var<float> loss_t = fdiv::critic_loss<fdiv::GAN>(T(x), T(fake.detach()));
template <Divergence Div, Real T>
Var<T> critic_loss(const Var<T>& v_p, const Var<T>& v_q) {
    detail::check_outputs(v_p, "fdiv::critic_loss", "v_p");
    detail::check_outputs(v_q, "fdiv::critic_loss", "v_q");
    return Var<T>(mean(Var<T>(Div::f_star_activation(v_q))) - mean(Var<T>(Div::activation(v_p))));
}

/// The generator's loss: it minimises the divergence estimate, whose only Q-dependent term
/// is -E_Q[f*(g_f(v_q))] (v_q = critic outputs on G(z), not detached).
///
///     Var<float> loss_g = fdiv::generator_loss<fdiv::KL>(T(G(z)));
template <Divergence Div, Real T>
Var<T> generator_loss(const Var<T>& v_q) {
    detail::check_outputs(v_q, "fdiv::generator_loss", "v_q");
    return Var<T>(-mean(Var<T>(Div::f_star_activation(v_q))));
}

/// The f-GAN paper's alternative generator loss -E_Q[g_f(v_q)] (maximise E_Q[g_f(v)]): the
/// same fixed points, stronger gradients early in training. For gan it is the
/// non-saturating loss E_Q[sp(-v)].
///
///     Var<float> loss_g = fdiv::generator_loss_alt<fdiv::GAN>(T(G(z)));
template <Divergence Div, Real T>
Var<T> generator_loss_alt(const Var<T>& v_q) {
    detail::check_outputs(v_q, "fdiv::generator_loss_alt", "v_q");
    return Var<T>(-mean(Var<T>(Div::activation(v_q))));
}

// ---- choosing a divergence at run time (e.g. from a --divergence flag) ---------------------
namespace detail {
template <class Tuple> struct variant_of;
template <class... D> struct variant_of<std::tuple<D...>> { using type = std::variant<D...>; };
}  // namespace detail

/// One of the divergences of `All`.
using AnyDivergence = detail::variant_of<All>::type;

/// The short names, in the order of `All`: kl reverse_kl pearson neyman hellinger js gan tv.
inline std::vector<std::string_view> divergence_names() {
    return [&]<class... D>(std::tuple<D...>*) { return std::vector<std::string_view>{D::name...}; }(static_cast<All*>(nullptr));
}

/// The divergence called `name` (exactly one of divergence_names()); an ember::Error
/// listing the valid names otherwise.
inline AnyDivergence parse_divergence(std::string_view name) {
    std::optional<AnyDivergence> out;
    [&]<class... D>(std::tuple<D...>*) {
        (void)((name == D::name ? (out.emplace(D{}), true) : false) || ...);
    }(static_cast<All*>(nullptr));
    if (!out) {
        std::string valid;
        for (std::string_view n : divergence_names()) valid += (valid.empty() ? "" : ", ") + std::string(n);
        ember::detail::fail("parse_divergence", "unknown f-divergence '", name, "'; expected one of ", valid);
    }
    return *out;
}

/// Calls f with a value of the chosen divergence's type; the type is the template argument:
///
///     fdiv::visit_divergence(div, [&]<class D>(D) { loss = fdiv::critic_loss<D>(vp, vq); });
template <class F>
decltype(auto) visit_divergence(const AnyDivergence& d, F&& f) {
    return std::visit(std::forward<F>(f), d);
}

/// The short name of the chosen divergence.
inline std::string_view divergence_name(const AnyDivergence& d) {
    return std::visit([](auto div) { return std::string_view(decltype(div)::name); }, d);
}

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS_AFTER(Divergence Div, Div, variational_bound)
EMBER_TAKES_EXPRESSIONS_AFTER(Divergence Div, Div, critic_loss)
EMBER_TAKES_EXPRESSIONS_AFTER(Divergence Div, Div, generator_loss)
EMBER_TAKES_EXPRESSIONS_AFTER(Divergence Div, Div, generator_loss_alt)

}  // namespace ember::fdiv
