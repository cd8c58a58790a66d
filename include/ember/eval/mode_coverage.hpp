#pragma once
/// \file
/// Mode-coverage metrics for samples of a generative model trained on a mixture of K
/// isotropic Gaussians with equal weights (the 25-Gaussian grid and the 8-Gaussian ring of
/// data/toy2d.hpp), as in the mode-collapse literature (VEEGAN, Srivastava et al.\ 2017;
/// PacGAN, Lin et al.\ 2018; MEG, Kumar et al.\ 2019):
///
///   * every sample x_i is assigned to its nearest centre k(i) = argmin_k ||x_i - c_k||
///     (Euclidean; ties go to the centre listed first);
///   * it is HIGH-QUALITY if ||x_i - c_k(i)|| <= r σ, with σ the components' standard
///     deviation (ToyModes::std) and r = 3 by default ("within three standard deviations");
///   * n_k = the number of high-quality samples assigned to mode k;
///   * a mode is COVERED if n_k >= min_count, 1 by default ("at least one high-quality
///     sample"); modes_covered = #{k : n_k >= min_count};
///   * high_quality_share = Σ_k n_k / N over all N samples (non-finite ones included);
///   * reverse KL of the mode histogram against the uniform target, KL(q || p) with
///     q_k = n_k / Σ_j n_j (the histogram of the high-quality samples over the modes) and
///     p_k = 1/K:
///         KL(q || p) = Σ_{k: n_k > 0} q_k log(K q_k),
///     in nats. Empty modes contribute 0 (the convention 0·log 0 = 0, which is exact for the
///     reverse direction: q_k = 0 puts no mass there), so the value stays finite when modes
///     are missing: it is 0 for a perfectly balanced histogram and log(K/m) when q is
///     uniform over only m of the K modes (log K for a single mode). With no high-quality
///     sample at all q is undefined and the value is NaN.
///
/// Samples with a NaN or infinite coordinate are assigned to no mode and are never
/// high-quality (they still count in N).
///
///     const ModeCoverage m = mode_coverage(samples, grid25_modes());
///     std::printf("%d/%d modes, %.1f%% high quality, KL %.3f\n", m.modes_covered, m.modes,
///                 100 * m.high_quality_share, m.reverse_kl);
#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"
#include "ember/data/toy2d.hpp"

namespace ember {

/// The mode-coverage metrics of a set of samples (see the file description).
struct ModeCoverage {
    Index samples = 0;                 ///< N
    Index high_quality = 0;            ///< Σ_k n_k
    int modes = 0;                     ///< K
    int modes_covered = 0;             ///< #{k : n_k >= min_count}
    double high_quality_share = 0;     ///< Σ_k n_k / N (0 when N = 0)
    double reverse_kl = 0;             ///< KL(q || uniform) in nats, NaN when Σ_k n_k = 0
    std::vector<Index> counts;         ///< n_k, the high-quality samples of each mode
    std::vector<Index> nearest;        ///< every sample's nearest mode, -1 for non-finite ones
};

/// Thresholds of the mode-coverage metrics.
struct ModeCoverageOptions {
    double radius_in_std = 3.0;  ///< r: high-quality within r·σ of the nearest centre
    Index min_count = 1;         ///< high-quality samples a mode needs to count as covered
};

/// KL(q || uniform) of a histogram of counts over K = counts.size() bins, q_k = n_k / Σ n,
/// empty bins contributing 0; NaN when all counts are 0.
inline double reverse_kl_to_uniform(const std::vector<Index>& counts) {
    EMBER_CHECK(!counts.empty(), "reverse_kl_to_uniform", "needs at least one bin");
    double total = 0;
    for (const Index n : counts) {
        EMBER_CHECK(n >= 0, "reverse_kl_to_uniform", "negative count ", n);
        total += static_cast<double>(n);
    }
    if (total == 0) return std::numeric_limits<double>::quiet_NaN();
    const double K = static_cast<double>(counts.size());
    double kl = 0;
    for (const Index n : counts) {
        if (n == 0) continue;
        const double q = static_cast<double>(n) / total;
        kl += q * std::log(K * q);
    }
    return std::max(0.0, kl);  // rounding can leave -1e-17 for a balanced histogram
}

/// The metrics above for samples [N, 2] against the mixture `modes`.
template <Real T>
ModeCoverage mode_coverage(const Tensor<T>& samples, const ToyModes& modes, const ModeCoverageOptions& o = {}) {
    constexpr const char* op = "mode_coverage";
    EMBER_CHECK(samples.defined() && samples.rank() == 2 && samples.dim(1) == 2, op,
                "expected samples of shape [N, 2], got ",
                samples.defined() ? samples.shape().str() : std::string("an undefined tensor"));
    EMBER_CHECK(!modes.centres.empty(), op, "the mixture has no modes");
    EMBER_CHECK(modes.std > 0 && std::isfinite(modes.std), op, "the modes' standard deviation must be positive, got ",
                modes.std);
    EMBER_CHECK(o.radius_in_std > 0 && std::isfinite(o.radius_in_std), op,
                "radius_in_std must be positive and finite, got ", o.radius_in_std);
    EMBER_CHECK(o.min_count >= 1, op, "min_count must be >= 1, got ", o.min_count);

    const Tensor<T> s = samples.contiguous();
    const Index N = s.dim(0);
    const int K = static_cast<int>(modes.centres.size());
    const double radius2 = (o.radius_in_std * modes.std) * (o.radius_in_std * modes.std);
    ModeCoverage m;
    m.samples = N;
    m.modes = K;
    m.counts.assign(static_cast<std::size_t>(K), 0);
    m.nearest.assign(static_cast<std::size_t>(N), -1);
    for (Index i = 0; i < N; ++i) {
        const double x = static_cast<double>(s.data()[2 * i]), y = static_cast<double>(s.data()[2 * i + 1]);
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        int best = 0;
        double best_d2 = std::numeric_limits<double>::infinity();
        for (int k = 0; k < K; ++k) {
            const auto& [cx, cy] = modes.centres[static_cast<std::size_t>(k)];
            const double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
            if (d2 < best_d2) best_d2 = d2, best = k;
        }
        m.nearest[static_cast<std::size_t>(i)] = best;
        if (best_d2 <= radius2) ++m.counts[static_cast<std::size_t>(best)], ++m.high_quality;
    }
    for (const Index n : m.counts) m.modes_covered += n >= o.min_count;
    m.high_quality_share = N > 0 ? static_cast<double>(m.high_quality) / static_cast<double>(N) : 0.0;
    m.reverse_kl = reverse_kl_to_uniform(m.counts);
    return m;
}

}  // namespace ember
