#pragma once
/// \file
/// Mode coverage on StackedMNIST (data/stacked.hpp), as PacGAN measures it (Lin et al.
/// 2018, §5): a digit classifier labels each of the three channels of every generated
/// sample, and the triple (d1, d2, d3) is the sample's mode, one of 1000. From the
/// classifier's softmax probabilities per channel, [N, 3, 10]:
///
///     StackedModes m = ember::stacked_modes(probs);   // m.modes of 1000, m.kl
///
/// - `modes_any`: the number of modes that at least one sample falls into (PacGAN's count);
/// - `modes`: the same counting only the samples whose three channels are all classified
///   with confidence (largest probability) >= `confidence`: a sample the classifier cannot
///   read is not a mode, however its argmax falls;
/// - `kl`: KL(h || U₁₀₀₀) = Σ_m h_m log(1000 h_m) of the histogram h of all samples' modes
///   (PacGAN's KL): 0 for a uniform histogram, log 1000 = 6.91 for a single mode;
/// - `channel_kl[c]`: the KL of channel c's digit histogram to uniform over ten;
/// - `confident_share`: the share of samples counted in `modes`.
///
/// Even samples drawn from the uniform distribution over the 1000 modes give kl > 0: with N
/// samples its expectation is about (1000 - 1) / (2N), 0.019 for PacGAN's N = 26 000, the
/// floor of the measure.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "ember/core/tensor.hpp"
#include "ember/eval/classification.hpp"

namespace ember {

/// The mode coverage of a set of stacked samples (see the file description).
struct StackedModes {
    Index samples = 0;                 ///< N
    Index modes = 0;                   ///< modes hit by confidently classified samples, of 1000
    Index modes_any = 0;               ///< modes hit by any sample, of 1000
    double kl = 0;                     ///< KL(mode histogram || uniform over 1000), all samples
    std::array<double, 3> channel_kl{};  ///< KL(digit histogram of channel c || uniform over 10)
    double confident_share = 0;        ///< share of samples with all three channels confident
};

/// Mode coverage from the classifier's probabilities for each channel, [N, 3, 10] (rows
/// summing to 1, e.g. softmax_rows of its logits), counting a channel as read when its
/// largest probability is at least `confidence`.
template <Real T>
StackedModes stacked_modes(const Tensor<T>& probs, double confidence = 0.9) {
    const Shape& s = probs.shape();
    EMBER_CHECK(s.rank() == 3 && s[1] == 3 && s[2] == 10 && s[0] > 0, "stacked_modes",
                "expected per-channel class probabilities [N, 3, 10] with N > 0, got shape ", s.str());
    EMBER_CHECK(confidence >= 0 && confidence <= 1, "stacked_modes", "confidence must be in [0, 1], got ", confidence);
    const Tensor<T> p = probs.contiguous();
    const Index n = s[0];
    std::vector<Index> all(static_cast<std::size_t>(n));
    std::array<std::vector<Index>, 3> digits;
    std::vector<bool> hit(1000, false);  // by a readable sample
    Index confident = 0;
    for (Index i = 0; i < n; ++i) {
        Index mode = 0;
        bool readable = true;
        for (Index c = 0; c < 3; ++c) {
            const T* row = p.data() + (i * 3 + c) * 10;
            Index best = 0;
            for (Index k = 1; k < 10; ++k)
                if (row[k] > row[best]) best = k;
            EMBER_CHECK(std::isfinite(static_cast<double>(row[best])), "stacked_modes", "sample ", i, ", channel ", c,
                        ": the probabilities are not finite");
            readable = readable && static_cast<double>(row[best]) >= confidence;
            digits[static_cast<std::size_t>(c)].push_back(best);
            mode = 10 * mode + best;
        }
        all[static_cast<std::size_t>(i)] = mode;
        if (readable) hit[static_cast<std::size_t>(mode)] = true, ++confident;
    }
    const std::vector<double> histogram = class_histogram(all, 1000);
    StackedModes m;
    m.samples = n;
    m.modes = static_cast<Index>(std::count(hit.begin(), hit.end(), true));
    m.modes_any = static_cast<Index>(std::count_if(histogram.begin(), histogram.end(), [](double h) { return h > 0; }));
    m.kl = kl_to_uniform(histogram);
    for (std::size_t c = 0; c < 3; ++c) m.channel_kl[c] = kl_to_uniform(class_histogram(digits[c], 10));
    m.confident_share = static_cast<double>(confident) / static_cast<double>(n);
    return m;
}

}  // namespace ember
