#pragma once
/// \file
/// Mutual-information estimators over the scores of a critic T(x, z) (docs/math.md §2).
///
/// Each estimator is a lower bound (or, for JSD, a monotone surrogate) on I(X; Z) that the
/// critic maximises; every function returns the quantity to MAXIMISE, as a scalar Var built
/// from ember's differentiable ops (so it can be differentiated twice, e.g. under a
/// gradient penalty). Negate it for an optimiser that minimises.
///
/// Two ways to give the scores:
///
///  (a) a score matrix `scores [B,B]` with scores(i,j) = T(x_i, z_j), from a separable
///      critic (score_matrix(g(x), h(z)) = g(x)·h(z)ᵀ) or from a concatenation critic
///      evaluated on all_pairs(x, z). The diagonal holds the B joint pairs (x_i, z_i); the
///      B(B-1) off-diagonal entries are the marginal pairs (x_i, z_j), i ≠ j: for i.i.d.
///      batches x_i and z_j are independent, so each is an exact sample of p(x)p(z).
///      (As in Poole et al. 2019's code; InfoNCE alone also uses the diagonal in its
///      denominator, by its definition.)
///  (b) joint scores `t_joint [B]` (or [B,1]) on the pairs (x_i, z_i) and marginal scores
///      `t_marg [M]` (or [M,1]) on shuffled pairs (x_i, z_π(i)) from shuffled_pairs(), for a
///      concatenation critic that is too costly to run on all B² pairs.
///
/// With sp = softplus, E_joint / E_marg batch means over the joint / marginal scores:
///
///     jsd      Î_JSD = E_joint[-sp(-T)] - E_marg[sp(T)]                 Deep InfoMax; MEG
///     dv       Î_DV  = E_joint[T] - log E_marg[e^T]                      Donsker-Varadhan
///     Mine     DV's value, gradient with a moving average in the denominator (Belghazi 2018)
///     nwj      Î_NWJ = E_joint[T] - e^{-1} E_marg[e^T]                   NWJ, f-GAN KL, MINE-f
///     infonce  Î_NCE = mean_i [T_ii - log((1/B) Σ_j e^{T_ij})] ≤ log B   van den Oord 2018
///     jsd_nwj  value NWJ(T + 1), gradient of JSD                         Poole et al. 2019 "JS"
///
/// plus the Barber-Agakov / InfoGAN latent-reconstruction bound, and the helpers that build
/// joint and marginal pairs. Every log E[e^T] is a log-mean-exp (logsumexp - log n), so no
/// exponential of a raw score is ever formed. Scores must be finite: a NaN or Inf score (a
/// diverged critic) is an ember::Error naming the estimator and the element.
#include <cmath>
#include <cstdint>
#include <memory>
#include <numbers>
#include <utility>
#include <vector>

#include "ember/autodiff/anomaly.hpp"
#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember::info {

namespace detail {

template <Real T>
void check_finite(const Var<T>& t, const char* op, const char* what) {
    const Index bad = ember::detail::first_non_finite(t.value());
    EMBER_CHECK(bad < 0, op, what, " of shape ", t.shape().str(), " has the non-finite value ", t.value().flat(bad),
                " at flat index ", bad, " (has the critic diverged?)");
}

// Critic scores as a vector [n]: accepts [n] or [n,1] (a critic's last Linear(·, 1)).
template <Real T>
Var<T> score_vector(const Var<T>& t, const char* op, const char* what) {
    EMBER_CHECK(t.defined(), op, what, " is undefined");
    const Shape& s = t.shape();
    const bool ok = s.rank() == 1 || (s.rank() == 2 && s[1] == 1);
    EMBER_CHECK(ok && s.numel() > 0, op, what, " must be a non-empty vector [n] or column [n,1] of critic scores, got shape ",
                s.str());
    check_finite(t, op, what);
    return s.rank() == 1 ? t : reshape(t, Shape{s[0]});
}

template <Real T>
Index check_score_matrix(const Var<T>& s, const char* op) {
    EMBER_CHECK(s.defined(), op, "the score matrix is undefined");
    const Shape& sh = s.shape();
    EMBER_CHECK(sh.rank() == 2 && sh[0] == sh[1] && sh[0] >= 2, op,
                "expected a square score matrix [B,B] with B >= 2 and scores(i,j) = T(x_i, z_j), got shape ", sh.str(),
                "; for separate joint and marginal scores call ", op, "(t_joint, t_marg)");
    check_finite(s, op, "the score matrix");
    return sh[0];
}

// log mean_j e^{t_j} = logsumexp(t) - log n, for a vector t [n].
template <Real T>
Var<T> log_mean_exp(const Var<T>& t) {
    return Var<T>(logsumexp(t) - static_cast<T>(std::log(static_cast<double>(t.numel()))));
}

}  // namespace detail

// ---- joint and marginal pairs -----------------------------------------------------------

/// The joint scores (diagonal, [B]) and marginal scores (off-diagonal, row-major, [B(B-1)])
/// of a score matrix [B,B], gathered with take() so that both stay differentiable to any
/// order. Every matrix form of an estimator below is its (t_joint, t_marg) form on these.
template <Real T>
struct SplitScores {
    /// The joint scores (the diagonal, [B]).
    Var<T> joint, marginal;  ///< the marginal scores (off the diagonal, row-major, [B(B-1)])
};

/// Splits a score matrix [B,B] (scores(i,j) = T(x_i, z_j)) into joint and marginal scores.
template <Real T>
SplitScores<T> split_scores(const Var<T>& scores) {
    const Index B = detail::check_score_matrix(scores, "split_scores");
    auto diag = std::make_shared<std::vector<Index>>();
    auto off = std::make_shared<std::vector<Index>>();
    diag->reserve(static_cast<std::size_t>(B));
    off->reserve(static_cast<std::size_t>(B * (B - 1)));
    for (Index i = 0; i < B; ++i)
        for (Index j = 0; j < B; ++j) (i == j ? diag : off)->push_back(i * B + j);
    return {take(scores, IndexList(diag), Shape{B}), take(scores, IndexList(off), Shape{B * (B - 1)})};
}

/// A uniformly random derangement of 0..n-1 (a permutation with π(i) ≠ i for every i), by
/// rejection: draw permutation(n, gen) until one has no fixed point. A permutation is a
/// derangement with probability → 1/e, so this takes e ≈ 2.7 draws on average.
///
/// Why a derangement and not any permutation: a fixed point π(i) = i makes the "marginal"
/// pair (x_i, z_i) a joint pair, so a plain random permutation contaminates E_marg with
/// joint pairs (one per batch on average, a bias of order 1/B that grows with the MI: at
/// the optimal critic a joint pair scores I on average, a marginal pair less than 0). With a derangement every pair
/// (x_i, z_π(i)) has independent members, hence is an exact sample of p(x)p(z).
inline std::vector<Index> derangement(Index n, Generator& gen) {
    EMBER_CHECK(n >= 2, "derangement", "needs n >= 2 elements (no derangement of ", n, " element(s) exists)");
    for (;;) {
        std::vector<Index> p = permutation(n, gen);
        bool fixed = false;
        for (Index i = 0; i < n && !fixed; ++i) fixed = p[static_cast<std::size_t>(i)] == i;
        if (!fixed) return p;
    }
}

/// A batch of marginal pairs made from joint pairs, as shuffled_pairs returns it.
template <Real T>
struct ShuffledPairs {
    Var<T> x;                ///< the batch x, unchanged
    Var<T> z;                ///< z with its rows permuted: z[perm[i]] is paired with x[i]
    std::vector<Index> perm;  ///< a derangement: perm[i] ≠ i
};

/// Marginal pairs (x_i, z_π(i)) from a batch of joint pairs (x_i, z_i), B = x.dim(0) =
/// z.dim(0) >= 2, with π a uniformly random derangement (see derangement() for why). The
/// permutation is index_select, so gradients flow to z (and to x, which is returned as is).
/// Feed (x, z) and the result to a concatenation critic for t_joint and t_marg.
template <Real T>
ShuffledPairs<T> shuffled_pairs(const Var<T>& x, const Var<T>& z, Generator& gen) {
    EMBER_CHECK(x.defined() && z.defined() && x.rank() >= 1 && z.rank() >= 1 && x.dim(0) == z.dim(0), "shuffled_pairs",
                "x and z must be batches with the same number of rows, got shapes ", x.defined() ? x.shape().str() : "undefined",
                " and ", z.defined() ? z.shape().str() : "undefined");
    EMBER_CHECK(x.dim(0) >= 2, "shuffled_pairs", "needs a batch of at least 2 rows to form marginal pairs, got shape ",
                x.shape().str());
    std::vector<Index> perm = derangement(x.dim(0), gen);
    Var<T> zp = index_select(z, perm);
    return {x, std::move(zp), std::move(perm)};
}

/// The score matrix of a separable critic T(x, z) = g(x)ᵀh(z): g hᵀ, [B,k] x [B,k] -> [B,B],
/// scores(i,j) = g(x_i)·h(z_j).
template <Real T>
Var<T> score_matrix(const Var<T>& gx, const Var<T>& hz) {
    EMBER_CHECK(gx.defined() && hz.defined() && gx.rank() == 2 && hz.rank() == 2 && gx.dim(0) == hz.dim(0) &&
                    gx.dim(1) == hz.dim(1),
                "score_matrix", "expected embeddings g(x) [B,k] and h(z) [B,k], got shapes ",
                gx.defined() ? gx.shape().str() : "undefined", " and ", hz.defined() ? hz.shape().str() : "undefined");
    return matmul(gx, transpose(hz));
}

/// All B² pairs for a concatenation critic: row i·B + j is [x_i, z_j], shape [B², dx + dz]
/// for x [B, dx] and z [B, dz]. reshape(T(all_pairs(x, z)), {B, B}) is then the score matrix
/// with scores(i,j) = T(x_i, z_j). Costs B² critic evaluations.
template <Real T>
Var<T> all_pairs(const Var<T>& x, const Var<T>& z) {
    EMBER_CHECK(x.defined() && z.defined() && x.rank() == 2 && z.rank() == 2 && x.dim(0) == z.dim(0), "all_pairs",
                "expected x [B,dx] and z [B,dz], got shapes ", x.defined() ? x.shape().str() : "undefined", " and ",
                z.defined() ? z.shape().str() : "undefined");
    const Index B = x.dim(0);
    std::vector<Index> rows_x, rows_z;
    rows_x.reserve(static_cast<std::size_t>(B * B));
    rows_z.reserve(static_cast<std::size_t>(B * B));
    for (Index i = 0; i < B; ++i)
        for (Index j = 0; j < B; ++j) rows_x.push_back(i), rows_z.push_back(j);
    return concat<T>({index_select(x, rows_x), index_select(z, rows_z)}, 1);
}

// ---- estimators -------------------------------------------------------------------------

/// Jensen-Shannon estimator (Deep InfoMax, Hjelm et al.\ 2019; the one MEG uses, docs/math.md §2):
///
///     Î_JSD = E_joint[-sp(-T)] - E_marg[sp(T)].
/// Not a bound on I itself but a monotone surrogate: it is 2·JSD(p(x,z) || p(x)p(z)) - log 4
/// at its optimum T* = log p(x,z)/(p(x)p(z)), whose gradients are bounded and low-variance
/// (sp, not exp). sp(x) = max(x,0) + log1p(e^{-|x|}) is ember's stable softplus.
template <Real T>
Var<T> jsd(const Var<T>& t_joint, const Var<T>& t_marg) {
    const Var<T> tj = detail::score_vector(t_joint, "jsd", "t_joint");
    const Var<T> tm = detail::score_vector(t_marg, "jsd", "t_marg");
    return Var<T>(-mean(Var<T>(softplus(-tj))) - mean(Var<T>(softplus(tm))));
}
/// jsd on a score matrix [B,B]: the diagonal are the joint scores, the rest the marginal ones.
template <Real T>
Var<T> jsd(const Var<T>& scores) {
    detail::check_score_matrix(scores, "jsd");
    const SplitScores<T> s = split_scores(scores);
    return jsd(s.joint, s.marginal);
}

/// Donsker-Varadhan lower bound (the bound MINE estimates):
///
///     Î_DV = E_joint[T] - log E_marg[e^T],  log E_marg[e^T] = logsumexp(t_marg) - log M.
/// Tight at T* = log p(x,z)/(p(x)p(z)) + c for any constant c. The minibatch log-mean-exp
/// makes its gradient biased; Mine below corrects that.
template <Real T>
Var<T> dv(const Var<T>& t_joint, const Var<T>& t_marg) {
    const Var<T> tj = detail::score_vector(t_joint, "dv", "t_joint");
    const Var<T> tm = detail::score_vector(t_marg, "dv", "t_marg");
    return Var<T>(mean(tj) - detail::log_mean_exp(tm));
}
/// dv on a score matrix [B,B]: the diagonal are the joint scores, the rest the marginal ones.
template <Real T>
Var<T> dv(const Var<T>& scores) {
    detail::check_score_matrix(scores, "dv");
    const SplitScores<T> s = split_scores(scores);
    return dv(s.joint, s.marginal);
}

/// Nguyen-Wainwright-Jordan lower bound (f-GAN KL, MINE-f):
///
///     Î_NWJ = E_joint[T] - e^{-1} E_marg[e^T],  computed as mean(t_joint) - exp(lme(t_marg) - 1)
/// with lme the log-mean-exp, so e^T is never formed. Tight at T* = 1 + log p(x,z)/(p(x)p(z)).
/// Unbiased per batch (no log of a mean), at the price of a variance that grows like e^I.
template <Real T>
Var<T> nwj(const Var<T>& t_joint, const Var<T>& t_marg) {
    const Var<T> tj = detail::score_vector(t_joint, "nwj", "t_joint");
    const Var<T> tm = detail::score_vector(t_marg, "nwj", "t_marg");
    return Var<T>(mean(tj) - exp(detail::log_mean_exp(tm) - T(1)));
}
/// nwj on a score matrix [B,B]: the diagonal are the joint scores, the rest the marginal ones.
template <Real T>
Var<T> nwj(const Var<T>& scores) {
    detail::check_score_matrix(scores, "nwj");
    const SplitScores<T> s = split_scores(scores);
    return nwj(s.joint, s.marginal);
}

/// InfoNCE (van den Oord et al.\ 2018), score-matrix form only:
///
///     Î_NCE = mean_i [T_ii - log((1/B) Σ_j e^{T_ij})] = log B + mean_i [T_ii - logsumexp_j T_ij].
/// Each term T_ii - logsumexp_j T_ij is a log-softmax, ≤ 0, so Î_NCE ≤ log B whatever the
/// critic (it saturates at log B once the diagonal dominates): low variance, but biased low
/// whenever I > log B. The sum over j includes the joint pair j = i, by definition.
template <Real T>
Var<T> infonce(const Var<T>& scores) {
    const Index B = detail::check_score_matrix(scores, "infonce");
    const SplitScores<T> s = split_scores(scores);
    return Var<T>(mean(Var<T>(s.joint - logsumexp(scores, 1))) + static_cast<T>(std::log(static_cast<double>(B))));
}

/// The "JS" estimator of Poole et al.\ 2019 (their Fig.\ 2): train the critic with the JSD
/// objective (stable gradients), report the NWJ bound evaluated on the same critic.
///
///     value:    Î = NWJ(T + shift) = E_joint[T] + shift - e^{shift-1} E_marg[e^T]
///     gradient: ∇Î_JSD                 (returned as  jsd + detach(value - jsd))
/// Why shift = 1 (the default): the JSD optimum is T* = log r with r = p(x,z)/(p(x)p(z)),
/// while NWJ's optimum is 1 + log r; NWJ(T* + 1) = E_joint[log r] + 1 - E_marg[r] = I exactly,
/// whereas NWJ(T*) = I - 1/e. NWJ is a lower bound for every function, so both are valid
/// bounds; shift = 1 is the tight one. Poole et al.'s published code (vbmi, js_lower_bound)
/// evaluates nwj_lower_bound on the unshifted critic: pass shift = 0 to reproduce it (it
/// reads about 1/e ≈ 0.37 nats lower at convergence).
template <Real T>
Var<T> jsd_nwj(const Var<T>& t_joint, const Var<T>& t_marg, double shift = 1.0) {
    EMBER_CHECK(std::isfinite(shift), "jsd_nwj", "shift must be finite, got ", shift);
    const Var<T> tj = detail::score_vector(t_joint, "jsd_nwj", "t_joint");
    const Var<T> tm = detail::score_vector(t_marg, "jsd_nwj", "t_marg");
    const Var<T> js = jsd(tj, tm);
    const Var<T> est(mean(tj) + static_cast<T>(shift) - exp(detail::log_mean_exp(tm) + static_cast<T>(shift - 1)));
    return Var<T>(js + Var<T>(est - js).detach());
}
/// jsd_nwj on a score matrix [B,B].
template <Real T>
Var<T> jsd_nwj(const Var<T>& scores, double shift = 1.0) {
    detail::check_score_matrix(scores, "jsd_nwj");
    const SplitScores<T> s = split_scores(scores);
    return jsd_nwj(s.joint, s.marginal, shift);
}

/// MINE (Belghazi et al.\ 2018, "Mutual Information Neural Estimation", §3.2 "Correcting
/// the bias from the stochastic gradients"). The DV gradient is
///
///     ∇Î_DV = E_joint[∇T] - E_marg[e^T ∇T] / E_marg[e^T],
/// and replacing the full expectation in the denominator by its minibatch estimate biases
/// it. MINE keeps an exponential moving average instead,
///
///     ema ← (1 - rate)·ema + rate·E_batch,marg[e^T]   (the first batch initialises it),
/// and steps along  E_joint[∇T] - E_marg[e^T ∇T] / ema.
///
/// surrogate() first folds the current batch into the average, then uses it. It returns a
/// scalar whose VALUE is this batch's DV estimate and whose GRADIENT is exactly the
/// corrected gradient above:
///
///     g = E_joint[T] - E_marg[e^T] / detach(ema),  surrogate = detach(Î_DV) + g - detach(g).
/// Maximise it (or minimise loss() = -surrogate()); call one of the two once per step.
/// rate = 1 makes ema the batch mean, i.e. the plain DV gradient. The average is kept in
/// log space (log-add-exp update) so e^T is never formed. estimate() reports Î_DV.
template <Real T>
class Mine {
public:
    /// A MINE estimator whose moving average of E_marg[e^T] moves by `rate` per step, in (0, 1].
    explicit Mine(double rate = 0.01) : rate_(rate) {
        EMBER_CHECK(rate > 0 && rate <= 1, "Mine", "the moving-average rate must be in (0, 1], got ", rate);
    }

    /// The surrogate from joint scores [n] and marginal scores [m] (advances the moving average).
    Var<T> surrogate(const Var<T>& t_joint, const Var<T>& t_marg) {
        const Var<T> tj = detail::score_vector(t_joint, "Mine::surrogate", "t_joint");
        const Var<T> tm = detail::score_vector(t_marg, "Mine::surrogate", "t_marg");
        const Var<T> lme = detail::log_mean_exp(tm);  // log E_batch,marg[e^T]
        const double batch = static_cast<double>(lme.item());
        if (updates_ == 0) {
            log_ema_ = batch;
        } else {  // log((1-a)·e^{log_ema} + a·e^{batch}), stably
            const double u = std::log1p(-rate_) + log_ema_, v = std::log(rate_) + batch;
            const double m = std::max(u, v);
            log_ema_ = rate_ == 1 ? batch : m + std::log(std::exp(u - m) + std::exp(v - m));
        }
        ++updates_;
        const Var<T> est(mean(tj) - lme);                                        // Î_DV of this batch
        const Var<T> g(mean(tj) - exp(lme - static_cast<T>(log_ema_)));          // E_j[T] - E_m[e^T]/ema
        return Var<T>(est.detach() + Var<T>(g - g.detach()));
    }
    /// The surrogate from a score matrix [B,B] (advances the moving average).
    Var<T> surrogate(const Var<T>& scores) {
        detail::check_score_matrix(scores, "Mine::surrogate");
        const SplitScores<T> s = split_scores(scores);
        return surrogate(s.joint, s.marginal);
    }
    /// -surrogate(t_joint, t_marg), to minimise.
    Var<T> loss(const Var<T>& t_joint, const Var<T>& t_marg) { return Var<T>(-surrogate(t_joint, t_marg)); }
    /// -surrogate(scores), to minimise.
    Var<T> loss(const Var<T>& scores) { return Var<T>(-surrogate(scores)); }

    /// The DV estimate (no state change).
    static Var<T> estimate(const Var<T>& t_joint, const Var<T>& t_marg) { return dv(t_joint, t_marg); }
    /// The DV estimate from a score matrix (no state change).
    static Var<T> estimate(const Var<T>& scores) { return dv(scores); }

    /// The moving-average rate.
    double rate() const { return rate_; }
    /// Number of batches folded into the moving average.
    std::int64_t updates() const { return updates_; }
    /// The moving average of E_marg[e^T] (and its log); meaningful once updates() > 0.
    double moving_average() const { return std::exp(log_ema_); }
    /// The log of the moving average.
    double log_moving_average() const { return log_ema_; }
    /// Restores a saved state (e.g.\ from a checkpoint).
    void set_state(double log_moving_average, std::int64_t updates) {
        EMBER_CHECK(updates >= 0 && std::isfinite(log_moving_average), "Mine::set_state",
                    "needs a finite log average and updates >= 0, got ", log_moving_average, " and ", updates);
        log_ema_ = log_moving_average;
        updates_ = updates;
    }
    /// Forgets the moving average: the next batch initialises it again.
    void reset() { updates_ = 0, log_ema_ = 0; }

private:
    double rate_;
    double log_ema_ = 0;
    std::int64_t updates_ = 0;
};

// ---- Barber-Agakov / InfoGAN latent reconstruction (docs/math.md §2) ---------------------

/// E_i ||z_i - ẑ_i||², the squared error summed over each sample's features and averaged
/// over the batch, with ẑ = E(G(z)) the encoder's reconstruction of the latent. Minimising
/// it maximises the Barber-Agakov bound below (for a fixed σ). z and ẑ: [B, ...], same shape.
template <Real T>
Var<T> latent_reconstruction_loss(const Var<T>& z, const Var<T>& z_hat) {
    EMBER_CHECK(z.defined() && z_hat.defined() && z.rank() >= 1 && z.shape() == z_hat.shape() && z.numel() > 0,
                "latent_reconstruction_loss", "z and its reconstruction must have the same non-empty shape [B, ...], got ",
                z.defined() ? z.shape().str() : "undefined", " and ", z_hat.defined() ? z_hat.shape().str() : "undefined");
    const Index B = z.dim(0);
    const Var<T> d2 = sum(Var<T>(square(z - z_hat)));
    return Var<T>(d2 * (T(1) / static_cast<T>(B)));
}

/// Barber-Agakov lower bound with the Gaussian decoder p(z|x) = N(E(x), σ²I) in d = numel/B
/// dimensions (InfoGAN's L_I):
///
///     I(X; Z) ≥ H(Z) + E log p(z|x) = H(Z) - (d/2) log(2πσ²) - E||z - E(G(z))||² / (2σ²).
/// `entropy_z` is H(Z) in nats (for z ~ N(0, I_d): (d/2) log(2πe), see gaussian_entropy_diag
/// in entropy.hpp); it is tight when N(E(x), σ²I) is the true posterior of z given x.
template <Real T>
Var<T> barber_agakov_bound(const Var<T>& z, const Var<T>& z_hat, double entropy_z, double sigma) {
    EMBER_CHECK(std::isfinite(entropy_z), "barber_agakov_bound", "H(Z) must be finite, got ", entropy_z);
    EMBER_CHECK(sigma > 0 && std::isfinite(sigma), "barber_agakov_bound", "sigma must be positive and finite, got ", sigma);
    const Var<T> loss = latent_reconstruction_loss(z, z_hat);
    const double d = static_cast<double>(z.numel() / z.dim(0));
    const double c = entropy_z - 0.5 * d * std::log(2 * std::numbers::pi * sigma * sigma);
    return Var<T>(static_cast<T>(c) - loss * static_cast<T>(1 / (2 * sigma * sigma)));
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_MI_INSTANCES(X, T) \
    X template SplitScores<T> split_scores<T>(const Var<T>&); \
    X template ShuffledPairs<T> shuffled_pairs<T>(const Var<T>&, const Var<T>&, Generator&); \
    X template Var<T> score_matrix<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> all_pairs<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> jsd<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> jsd<T>(const Var<T>&); \
    X template Var<T> dv<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> dv<T>(const Var<T>&); \
    X template Var<T> nwj<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> nwj<T>(const Var<T>&); \
    X template Var<T> infonce<T>(const Var<T>&); \
    X template Var<T> jsd_nwj<T>(const Var<T>&, const Var<T>&, double); \
    X template Var<T> jsd_nwj<T>(const Var<T>&, double); \
    X template Var<T> latent_reconstruction_loss<T>(const Var<T>&, const Var<T>&); \
    X template Var<T> barber_agakov_bound<T>(const Var<T>&, const Var<T>&, double, double);
EMBER_EXTERN_INSTANCES(EMBER_MI_INSTANCES)

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS(jsd)
EMBER_TAKES_EXPRESSIONS(dv)
EMBER_TAKES_EXPRESSIONS(nwj)
EMBER_TAKES_EXPRESSIONS(infonce)
EMBER_TAKES_EXPRESSIONS(jsd_nwj)
EMBER_TAKES_EXPRESSIONS(latent_reconstruction_loss)
EMBER_TAKES_EXPRESSIONS(barber_agakov_bound)

}  // namespace ember::info
