#pragma once
/// \file
/// The mathematics of variational auto-encoders (docs/math.md §5) and the Gaussian closed forms
/// used to test and evaluate them (docs/math.md §8).
///
///     log p(x) = ELBO + KL(q(z|x) || p(z|x)),   ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))
///
/// The encoder outputs μ and logvar = log σ² of a diagonal Gaussian q(z|x); the prior is
/// p(z) = N(0, I). Everything that takes a Var is built from ember's differentiable ops, so
/// gradients (and gradients of gradients) flow to every Var argument.
///
/// Conventions shared by the per-sample functions below:
///  * "per sample": the trailing `event_dims` axes (default 1, the feature axis) are summed
///    and the leading (batch) axes are kept: [B, d] -> [B], [K, B, d] -> [K, B], and with
///    event_dims = 3, [B, C, H, W] -> [B]. 1 <= event_dims <= rank.
///  * The operands of one function broadcast against each other with NumPy's rules, so data
///    x [B, D] meets decoder outputs for K samples of z, [K, B, D], and a shared learned
///    variance may be [D] or a scalar. Shapes that do not broadcast are an ember::Error that
///    names the function and every operand's shape.
///  * K samples per input are laid out as [K, B, d] (sample k of input b at [k, b, :]). It
///    is contiguous, so reshape(z, {K * B, d}) (row k·B + b) feeds a decoder for free, and
///    reshape(out, {K, B, ...}) brings its output back.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/random.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

#include "ember/core/instances.hpp"
#if EMBER_HEADER_DEFINITIONS
#include <Eigen/Cholesky>
#endif

namespace ember::info {

namespace detail::vae {

// log 2π, the normalising constant of a unit Gaussian per dimension.
inline constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// The broadcast of all named shapes, or an error listing them all.
inline Shape broadcast_named(const char* op, std::initializer_list<std::pair<const char*, Shape>> operands) {
    Shape out;
    bool ok = true;
    for (const auto& [name, s] : operands) {
        const int r = std::max(out.rank(), s.rank());
        std::vector<Index> d(static_cast<std::size_t>(r));
        for (int i = 0; i < r && ok; ++i) {
            const int ia = out.rank() - r + i, ib = s.rank() - r + i;
            const Index da = ia >= 0 ? out[ia] : 1, db = ib >= 0 ? s[ib] : 1;
            ok = da == db || da == 1 || db == 1;
            d[static_cast<std::size_t>(i)] = da == 1 ? db : da;
        }
        if (!ok) break;
        out = Shape(std::span<const Index>(d));
    }
    if (!ok) {
        std::string list;
        for (const auto& [name, s] : operands) list += (list.empty() ? "" : ", ") + std::string(name) + " " + s.str();
        ::ember::detail::fail(op, "shapes do not broadcast together: ", list);
    }
    return out;
}

inline void check_same_shape(const char* op, const char* na, const Shape& a, const char* nb, const Shape& b) {
    EMBER_CHECK(a == b, op, na, " ", a.str(), " and ", nb, " ", b.str(), " must have the same shape");
}

inline void check_event_dims(const char* op, const Shape& s, int event_dims) {
    EMBER_CHECK(event_dims >= 1 && event_dims <= s.rank(), op, "event_dims ", event_dims,
                " must be between 1 and the rank of the (broadcast) operand shape ", s.str());
}

// The batch shape: `s` without its trailing `event_dims` axes.
inline Shape batch_shape(const Shape& s, int event_dims) {
    return Shape(std::span<const Index>(s.begin(), static_cast<std::size_t>(s.rank() - event_dims)));
}

// Sums the trailing `event_dims` axes of v: [batch..., event...] -> [batch...].
template <Real T>
Var<T> sum_event(const Var<T>& v, int event_dims, const char* op) {
    check_event_dims(op, v.shape(), event_dims);
    if (event_dims == 1) return sum(v, -1);
    const Shape batch = batch_shape(v.shape(), event_dims);
    std::vector<Index> d(batch.begin(), batch.end());
    d.push_back(batch.numel() == 0 ? 0 : v.numel() / batch.numel());
    return sum(reshape(v, Shape(std::span<const Index>(d))), -1);
}

}  // namespace detail::vae

// ---- sampling ---------------------------------------------------------------------------

/// Reparameterised sample z = μ + exp(½·logvar) ⊙ ε (docs/math.md §5): z is a differentiable
/// function of μ and logvar, so a Monte-Carlo estimate of E_q[f(z)] has a gradient with
/// respect to the encoder. This overload takes the noise ε: either μ's shape (one sample per
/// input) or [K, ...μ's shape] (K samples; the result is then [K, B, d]).
template <Real T>
Var<T> reparameterize(const Var<T>& mu, const Var<T>& logvar, const Tensor<T>& eps) {
    detail::vae::check_same_shape("reparameterize", "mu", mu.shape(), "logvar", logvar.shape());
    const Shape& m = mu.shape();
    const Shape& e = eps.shape();
    bool ok = e == m;
    if (!ok && e.rank() == m.rank() + 1) {
        ok = true;
        for (int i = 0; i < m.rank(); ++i) ok = ok && e[i + 1] == m[i];
    }
    EMBER_CHECK(ok, "reparameterize", "eps ", e.str(), " must have mu's shape ", m.str(),
                " or [K] followed by it (K samples per input)");
    return Var<T>(mu + exp(logvar * T(0.5)) * eps);
}

/// One sample per input, ε ~ N(0, I) drawn from `gen`: z has μ's shape.
template <Real T>
Var<T> reparameterize(const Var<T>& mu, const Var<T>& logvar, Generator& gen) {
    detail::vae::check_same_shape("reparameterize", "mu", mu.shape(), "logvar", logvar.shape());
    return reparameterize(mu, logvar, normal<T>(mu.shape(), gen));
}

/// K samples per input, ε ~ N(0, I) drawn from `gen`: z is [K, ...μ's shape], e.g.\ [K, B, d].
template <Real T>
Var<T> reparameterize(const Var<T>& mu, const Var<T>& logvar, Index K, Generator& gen) {
    detail::vae::check_same_shape("reparameterize", "mu", mu.shape(), "logvar", logvar.shape());
    EMBER_CHECK(K >= 1, "reparameterize", "number of samples K must be at least 1, got ", K);
    EMBER_CHECK(mu.rank() < kMaxRank, "reparameterize", "mu ", mu.shape().str(),
                " has rank ", mu.rank(), "; K samples add an axis and ember tensors have rank at most ", kMaxRank);
    std::vector<Index> d{K};
    d.insert(d.end(), mu.shape().begin(), mu.shape().end());
    return reparameterize(mu, logvar, normal<T>(Shape(std::span<const Index>(d)), gen));
}

// ---- KL divergences between diagonal Gaussians --------------------------------------------

/// KL(N(μ, σ²) || N(0, I)) per sample (docs/math.md §5):
///
///     -½ Σ_j (1 + logvar_j - μ_j² - exp(logvar_j)) = ½ Σ_j (μ_j² + expm1(logvar_j) - logvar_j).
/// The expm1 form is the same number without the cancellation of exp(l) - 1 near l = 0.
/// mu and logvar must have the same shape; [B, d] -> [B].
template <Real T>
Var<T> kl_normal_std(const Var<T>& mu, const Var<T>& logvar, int event_dims = 1) {
    detail::vae::check_same_shape("kl_normal_std", "mu", mu.shape(), "logvar", logvar.shape());
    detail::vae::check_event_dims("kl_normal_std", mu.shape(), event_dims);
    return detail::vae::sum_event(Var<T>((square(mu) + expm1(logvar) - logvar) * T(0.5)), event_dims, "kl_normal_std");
}

/// Batch reductions of kl_normal_std: the mean over the batch (the usual VAE loss term) and
/// the sum (a per-data-set total). Both are rank-0.
template <Real T>
Var<T> kl_normal_std_mean(const Var<T>& mu, const Var<T>& logvar, int event_dims = 1) {
    return mean(kl_normal_std(mu, logvar, event_dims));
}
/// The sum of kl_normal_std over the batch (rank 0).
template <Real T>
Var<T> kl_normal_std_sum(const Var<T>& mu, const Var<T>& logvar, int event_dims = 1) {
    return sum(kl_normal_std(mu, logvar, event_dims));
}

/// KL(N(μ₁, diag e^{logvar₁}) || N(μ₂, diag e^{logvar₂})) per sample:
///
///     ½ Σ [logvar₂ - logvar₁ + (exp(logvar₁) + (μ₁-μ₂)²) / exp(logvar₂) - 1]
///     = ½ Σ [(logvar₂ - logvar₁) + expm1(logvar₁ - logvar₂) + (μ₁-μ₂)² exp(-logvar₂)].
/// The second form never forms exp(logvar₁) and exp(logvar₂) separately (no overflow when
/// both are large) and is exactly 0 for identical arguments. All four broadcast (a learned
/// prior may be [d]); the result is the broadcast shape without its event axes.
template <Real T>
Var<T> kl_normal_diag(const Var<T>& mu1, const Var<T>& logvar1, const Var<T>& mu2, const Var<T>& logvar2,
                      int event_dims = 1) {
    const Shape s = detail::vae::broadcast_named("kl_normal_diag", {{"mu1", mu1.shape()},
                                                                    {"logvar1", logvar1.shape()},
                                                                    {"mu2", mu2.shape()},
                                                                    {"logvar2", logvar2.shape()}});
    detail::vae::check_event_dims("kl_normal_diag", s, event_dims);
    return detail::vae::sum_event(
        Var<T>((logvar2 - logvar1 + expm1(logvar1 - logvar2) + square(mu1 - mu2) * exp(-logvar2)) * T(0.5)), event_dims,
        "kl_normal_diag");
}

// ---- log-likelihoods (per sample) --------------------------------------------------------

/// Bernoulli decoder with logits a (docs/math.md §5): log p(x|z) = Σ x·a - sp(a), sp = softplus.
/// Computed as -Σ [x·sp(-a) + (1-x)·sp(a)], the same function for every real x (because
/// sp(a) - sp(-a) = a) without the cancellation of x·a against sp(a): for x ∈ {0, 1} each
/// term is a single softplus, accurate to the last bit even at |a| = 100 and never inf/NaN
/// for finite inputs. x in [0, 1] (binarised or grey-level pixels), broadcasting against a.
template <Real T>
Var<T> bernoulli_log_prob(const Var<T>& x, const Var<T>& logits, int event_dims = 1) {
    const Shape s = detail::vae::broadcast_named("bernoulli_log_prob", {{"x", x.shape()}, {"logits", logits.shape()}});
    detail::vae::check_event_dims("bernoulli_log_prob", s, event_dims);
    return detail::vae::sum_event(Var<T>(-(x * softplus(-logits) + (T(1) - x) * softplus(logits))), event_dims,
                                  "bernoulli_log_prob");
}

/// Diagonal Gaussian log density, per sample:
///
///     log N(x; μ, diag e^{logvar}) = -½ Σ [log 2π + logvar + (x-μ)² exp(-logvar)].
/// This is the helper for log q(z|x) of a Gaussian encoder (x = z, μ, logvar from the
/// encoder) and for a Gaussian decoder's log p(x|z). x, mu, logvar broadcast.
template <Real T>
Var<T> gaussian_log_prob(const Var<T>& x, const Var<T>& mu, const Var<T>& logvar, int event_dims = 1) {
    const Shape s = detail::vae::broadcast_named(
        "gaussian_log_prob", {{"x", x.shape()}, {"mu", mu.shape()}, {"logvar", logvar.shape()}});
    detail::vae::check_event_dims("gaussian_log_prob", s, event_dims);
    return detail::vae::sum_event(
        Var<T>((logvar + square(x - mu) * exp(-logvar) + T(detail::vae::kLog2Pi)) * T(-0.5)), event_dims,
        "gaussian_log_prob");
}

/// Standard normal log density, per sample: log N(z; 0, I) = -½ Σ (log 2π + z²). The prior
/// term log p(z) of a VAE.
template <Real T>
Var<T> standard_normal_log_prob(const Var<T>& z, int event_dims = 1) {
    detail::vae::check_event_dims("standard_normal_log_prob", z.shape(), event_dims);
    return detail::vae::sum_event(Var<T>((square(z) + T(detail::vae::kLog2Pi)) * T(-0.5)), event_dims,
                                  "standard_normal_log_prob");
}

// ---- bounds on log p(x) ------------------------------------------------------------------

/// ELBO per sample (docs/math.md §5): E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), with the KL in
/// closed form (kl_normal_std) and the expectation estimated by the decoder's
/// log-likelihood at reparameterised samples: `log_px_given_z` is [B] for one sample per
/// input, or [K, B] for K samples (averaged over K). mu, logvar: the encoder's outputs for
/// the same inputs, [B, d]. Returns [B]; maximise its batch mean. The ELBO is a lower bound:
/// log p(x) - ELBO = KL(q(z|x) || p(z|x)) >= 0.
template <Real T>
Var<T> elbo(const Var<T>& log_px_given_z, const Var<T>& mu, const Var<T>& logvar, int event_dims = 1) {
    const Var<T> kl = kl_normal_std(mu, logvar, event_dims);
    const Shape& l = log_px_given_z.shape();
    const Shape& k = kl.shape();
    if (l == k) return Var<T>(log_px_given_z - kl);
    bool ok = l.rank() == k.rank() + 1 && l[0] >= 1;
    for (int i = 0; ok && i < k.rank(); ++i) ok = l[i + 1] == k[i];
    EMBER_CHECK(ok, "elbo", "log_px_given_z ", l.str(), " must be ", k.str(), " (one sample of z per input) or ",
                k.rank() == 0 ? std::string("[K]") : "[K," + k.str().substr(1), " (K samples), to match mu ",
                mu.shape().str(), " with event_dims ", event_dims);
    return Var<T>(mean(log_px_given_z, 0) - kl);
}

/// Log importance weights log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), with
/// p(z) = N(0, I) and q(z|x) = N(μ, diag e^{logvar}) (gaussian_log_prob). z: the K samples,
/// [K, B, d] (from reparameterize(mu, logvar, K, gen)); log_px_given_z: the decoder's
/// log-likelihoods at them, [K, B]. Returns [K, B]. With K = 1 and z drawn from q, log w is
/// the single-sample ("sampled-KL") ELBO estimate; its mean over z is the ELBO.
template <Real T>
Var<T> iwae_log_weights(const Var<T>& log_px_given_z, const Var<T>& z, const Var<T>& mu, const Var<T>& logvar,
                        int event_dims = 1) {
    const Var<T> log_qz = gaussian_log_prob(z, mu, logvar, event_dims);
    EMBER_CHECK(log_px_given_z.shape() == log_qz.shape(), "iwae_log_weights", "log_px_given_z ",
                log_px_given_z.shape().str(), " must have the batch shape ", log_qz.shape().str(), " of z ",
                z.shape().str(), " (with mu ", mu.shape().str(), ", event_dims ", event_dims, ")");
    return Var<T>(log_px_given_z + standard_normal_log_prob(z, event_dims) - log_qz);
}

/// Importance-weighted bound (IWAE, Burda et al.\ 2016; docs/math.md §5):
///
///     IWAE_K = log (1/K) Σ_k exp(log w_k) = logsumexp_k(log w_k) - log K,
/// with the K log-weights along `axis` (default 0: [K, B] -> [B]). logsumexp subtracts the
/// maximum, so weights like exp(-1000) do not underflow. E[IWAE_K] <= log p(x), increases
/// with K, and tends to log p(x) as K -> ∞; IWAE_1 is the ELBO.
template <Real T>
Var<T> iwae_bound(const Var<T>& log_w, int axis = 0) {
    EMBER_CHECK(log_w.rank() >= 1, "iwae_bound", "log_w must have an axis of K samples, got shape ", log_w.shape().str());
    const Index K = log_w.dim(log_w.shape().normalize_axis(axis, "iwae_bound"));
    EMBER_CHECK(K >= 1, "iwae_bound", "needs at least one sample along axis ", axis, " of ", log_w.shape().str());
    return Var<T>(logsumexp(log_w, axis) - T(std::log(static_cast<double>(K))));
}

// ---- full-covariance Gaussians (evaluation; double precision, no autodiff) ----------------

/// KL between two full-covariance Gaussians in d dimensions (docs/math.md §8):
///
///     KL(N(μ₁,Σ₁) || N(μ₂,Σ₂)) = ½[tr(Σ₂⁻¹Σ₁) + (μ₂-μ₁)ᵀΣ₂⁻¹(μ₂-μ₁) - d + log(det Σ₂ / det Σ₁)].
/// Through Cholesky factors Σ = L Lᵀ: tr(Σ₂⁻¹Σ₁) = ||L₂⁻¹L₁||²_F, the quadratic form is
/// ||L₂⁻¹(μ₂-μ₁)||², log det Σ = 2 Σ log L_ii; no inverse is formed. For evaluation and tests
/// (not differentiable). A covariance that is not symmetric positive definite is an error.
EMBER_INLINE double kl_gaussian_full(const Eigen::VectorXd& mu1, const Eigen::MatrixXd& cov1,
                                     const Eigen::VectorXd& mu2, const Eigen::MatrixXd& cov2);

/// Full-covariance Gaussian log density of each row of x [N, d]:
///
///     log N(x; μ, Σ) = -½[d log 2π + log det Σ + (x-μ)ᵀΣ⁻¹(x-μ)]   (via Σ = L Lᵀ).
/// For evaluation, e.g. the exact log p(x) of a linear-Gaussian model. Returns [N].
EMBER_INLINE Eigen::VectorXd gaussian_full_log_prob(const Eigen::MatrixXd& x, const Eigen::VectorXd& mu,
                                                    const Eigen::MatrixXd& cov);

namespace detail::vae {

template <Real T>
Eigen::MatrixXd to_eigen(const Tensor<T>& t) {
    const Tensor<T> c = t.contiguous();
    const Index rows = t.rank() == 2 ? t.dim(0) : 1, cols = t.rank() == 0 ? 1 : t.dim(-1);
    Eigen::MatrixXd m(rows, cols);
    for (Index i = 0; i < rows; ++i)
        for (Index j = 0; j < cols; ++j) m(i, j) = static_cast<double>(c.data()[i * cols + j]);
    return m;
}

}  // namespace detail::vae

/// The same on tensors: mu [d], cov [d,d] (float or double; computed in double).
template <Real T>
double kl_gaussian_full(const Tensor<T>& mu1, const Tensor<T>& cov1, const Tensor<T>& mu2, const Tensor<T>& cov2) {
    const bool ok = mu1.rank() == 1 && mu2.rank() == 1 && cov1.rank() == 2 && cov2.rank() == 2;
    EMBER_CHECK(ok, "kl_gaussian_full", "expected mu [d] and cov [d,d], got mu1 ", mu1.shape().str(), ", cov1 ",
                cov1.shape().str(), ", mu2 ", mu2.shape().str(), ", cov2 ", cov2.shape().str());
    return kl_gaussian_full(Eigen::VectorXd(detail::vae::to_eigen(mu1).transpose()), detail::vae::to_eigen(cov1),
                            Eigen::VectorXd(detail::vae::to_eigen(mu2).transpose()), detail::vae::to_eigen(cov2));
}

/// The same on tensors: x [N, d] -> [N] (or x [d] -> a scalar), mu [d], cov [d,d];
/// computed in double and returned in x's type.
template <Real T>
Tensor<T> gaussian_full_log_prob(const Tensor<T>& x, const Tensor<T>& mu, const Tensor<T>& cov) {
    const bool ok = (x.rank() == 1 || x.rank() == 2) && mu.rank() == 1 && cov.rank() == 2;
    EMBER_CHECK(ok, "gaussian_full_log_prob", "expected x [N,d] or [d], mu [d], cov [d,d]; got x ", x.shape().str(),
                ", mu ", mu.shape().str(), ", cov ", cov.shape().str());
    const Eigen::VectorXd lp = gaussian_full_log_prob(detail::vae::to_eigen(x),
                                                      Eigen::VectorXd(detail::vae::to_eigen(mu).transpose()),
                                                      detail::vae::to_eigen(cov));
    Tensor<T> out = x.rank() == 1 ? Tensor<T>::empty(Shape{}) : Tensor<T>::empty(Shape{x.dim(0)});
    for (Index i = 0; i < lp.size(); ++i) out.data()[i] = static_cast<T>(lp(i));
    return out;
}

#if EMBER_HEADER_DEFINITIONS
namespace detail::vae {

// Cholesky factor of a covariance, after checking it is finite, square, symmetric (to
// 1e-6 of its largest entry: rounding, not a wrong matrix) and positive definite.
inline Eigen::LLT<Eigen::MatrixXd> cholesky(const Eigen::MatrixXd& S, const char* op, const char* name) {
    EMBER_CHECK(S.rows() == S.cols(), op, name, " must be square, got [", S.rows(), ",", S.cols(), "]");
    EMBER_CHECK(S.allFinite(), op, name, " [", S.rows(), ",", S.cols(), "] has non-finite entries");
    const double scale = S.size() ? S.cwiseAbs().maxCoeff() : 0.0;
    const double asym = S.size() ? (S - S.transpose()).cwiseAbs().maxCoeff() : 0.0;
    EMBER_CHECK(asym <= 1e-6 * scale, op, name, " [", S.rows(), ",", S.cols(),
                "] is not symmetric (largest |S - Sᵀ| entry ", asym, ")");
    Eigen::LLT<Eigen::MatrixXd> llt((0.5 * (S + S.transpose())).eval());
    EMBER_CHECK(llt.info() == Eigen::Success, op, name, " [", S.rows(), ",", S.cols(),
                "] is not positive definite (Cholesky factorisation failed)");
    return llt;
}

// log det S = 2 Σ log L_ii.
inline double log_det(const Eigen::LLT<Eigen::MatrixXd>& llt) {
    return 2.0 * llt.matrixLLT().diagonal().array().log().sum();  // L's diagonal, stored in place
}

}  // namespace detail::vae

EMBER_INLINE double kl_gaussian_full(const Eigen::VectorXd& mu1, const Eigen::MatrixXd& cov1,
                                     const Eigen::VectorXd& mu2, const Eigen::MatrixXd& cov2) {
    const char* op = "kl_gaussian_full";
    const Index d = mu1.size();
    EMBER_CHECK(mu2.size() == d && cov1.rows() == d && cov1.cols() == d && cov2.rows() == d && cov2.cols() == d, op,
                "shapes must be mu [d], cov [d,d] with one d: got mu1 [", mu1.size(), "], cov1 [", cov1.rows(), ",",
                cov1.cols(), "], mu2 [", mu2.size(), "], cov2 [", cov2.rows(), ",", cov2.cols(), "]");
    EMBER_CHECK(mu1.allFinite() && mu2.allFinite(), op, "means must be finite");
    const auto l1 = detail::vae::cholesky(cov1, op, "cov1");
    const auto l2 = detail::vae::cholesky(cov2, op, "cov2");
    const Eigen::MatrixXd A = l2.matrixL().solve(l1.matrixL().toDenseMatrix());  // L₂⁻¹L₁
    const Eigen::VectorXd m = l2.matrixL().solve(mu2 - mu1);                       // L₂⁻¹(μ₂-μ₁)
    return 0.5 * (A.squaredNorm() + m.squaredNorm() - static_cast<double>(d) + detail::vae::log_det(l2) -
                  detail::vae::log_det(l1));
}

EMBER_INLINE Eigen::VectorXd gaussian_full_log_prob(const Eigen::MatrixXd& x, const Eigen::VectorXd& mu,
                                                    const Eigen::MatrixXd& cov) {
    const char* op = "gaussian_full_log_prob";
    const Index d = mu.size();
    EMBER_CHECK(x.cols() == d && cov.rows() == d && cov.cols() == d, op, "expected x [N,d], mu [d], cov [d,d]: got x [",
                x.rows(), ",", x.cols(), "], mu [", d, "], cov [", cov.rows(), ",", cov.cols(), "]");
    const auto llt = detail::vae::cholesky(cov, op, "cov");
    const Eigen::MatrixXd centred = (x.rowwise() - mu.transpose()).transpose();  // [d, N]
    const Eigen::MatrixXd m = llt.matrixL().solve(centred);                      // L⁻¹(x-μ), columns
    const double c = static_cast<double>(d) * detail::vae::kLog2Pi + detail::vae::log_det(llt);
    return (-0.5 * (m.colwise().squaredNorm().array() + c)).matrix().transpose();
}

#endif  // EMBER_HEADER_DEFINITIONS

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_VAE_INSTANCES(X, T) \
    X template Var<T> reparameterize<T>(const Var<T>&, const Var<T>&, const Tensor<T>&); \
    X template Var<T> reparameterize<T>(const Var<T>&, const Var<T>&, Generator&); \
    X template Var<T> reparameterize<T>(const Var<T>&, const Var<T>&, Index, Generator&); \
    X template Var<T> kl_normal_std<T>(const Var<T>&, const Var<T>&, int); \
    X template Var<T> kl_normal_std_mean<T>(const Var<T>&, const Var<T>&, int); \
    X template Var<T> kl_normal_std_sum<T>(const Var<T>&, const Var<T>&, int); \
    X template Var<T> kl_normal_diag<T>(const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&, int); \
    X template Var<T> bernoulli_log_prob<T>(const Var<T>&, const Var<T>&, int); \
    X template Var<T> gaussian_log_prob<T>(const Var<T>&, const Var<T>&, const Var<T>&, int); \
    X template Var<T> standard_normal_log_prob<T>(const Var<T>&, int); \
    X template Var<T> elbo<T>(const Var<T>&, const Var<T>&, const Var<T>&, int); \
    X template Var<T> iwae_log_weights<T>(const Var<T>&, const Var<T>&, const Var<T>&, const Var<T>&, int); \
    X template Var<T> iwae_bound<T>(const Var<T>&, int); \
    X template double kl_gaussian_full<T>(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, const Tensor<T>&); \
    X template Tensor<T> gaussian_full_log_prob<T>(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&);
EMBER_EXTERN_INSTANCES(EMBER_VAE_INSTANCES)

// The same functions taking elementwise expressions over Vars (autodiff/expr_node.hpp).
EMBER_TAKES_EXPRESSIONS(kl_normal_std)
EMBER_TAKES_EXPRESSIONS(kl_normal_std_mean)
EMBER_TAKES_EXPRESSIONS(kl_normal_std_sum)
EMBER_TAKES_EXPRESSIONS(kl_normal_diag)
EMBER_TAKES_EXPRESSIONS(bernoulli_log_prob)
EMBER_TAKES_EXPRESSIONS(gaussian_log_prob)
EMBER_TAKES_EXPRESSIONS(standard_normal_log_prob)
EMBER_TAKES_EXPRESSIONS(elbo)
EMBER_TAKES_EXPRESSIONS(iwae_log_weights)
EMBER_TAKES_EXPRESSIONS(iwae_bound)

}  // namespace ember::info
