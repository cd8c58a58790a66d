#pragma once
/// \file
/// StackedMNIST (Metz et al. 2017, *Unrolled GANs*; Srivastava et al. 2017, *VEEGAN*; Lin et
/// al. 2018, *PacGAN*): every sample stacks three images, drawn independently and uniformly
/// from a set of single-channel images, into the channels of one [3, H, W] image. With the
/// ten MNIST digits it has 1000 modes (d1, d2, d3), numbered 100·d1 + 10·d2 + d3. Batches are
/// drawn on the fly from the base set; nothing of the size of all 60 000³ triples is made.
///
///     const ImageSet mnist = load_image_set(Dataset::mnist, dir, true);
///     Generator gen(seed);
///     StackedBatch b = draw_stacked(mnist, 64, gen);   // b.images [64, 3, 28, 28], b.modes
///
/// The mode coverage of generated samples is measured by eval/stacked_modes.hpp.
#include <algorithm>
#include <vector>

#include "ember/core/random.hpp"
#include "ember/core/tensor.hpp"
#include "ember/data/mnist.hpp"

namespace ember {

/// A batch of stacked images and the mode of each.
struct StackedBatch {
    Tensor<float> images;      ///< [n, 3, H, W], pixel values as in the base set
    std::vector<Index> modes;  ///< 100·label₁ + 10·label₂ + label₃ of each sample, in [0, 1000)
};

/// n stacked samples from `set` (images [N, 1, H, W], labels in [0, 10)). The 3n source
/// images are drawn uniformly with replacement from `gen`, sample by sample and channel by
/// channel, so a batch depends only on the generator's position.
inline StackedBatch draw_stacked(const ImageSet& set, Index n, Generator& gen) {
    const Shape& s = set.images.shape();
    EMBER_CHECK(s.rank() == 4 && s[1] == 1 && s[0] > 0, "draw_stacked",
                "expected single-channel images [N, 1, H, W] with N > 0, got shape ", s.str());
    EMBER_CHECK(static_cast<Index>(set.labels.size()) == s[0], "draw_stacked", set.labels.size(), " labels for ", s[0],
                " images");
    EMBER_CHECK(n > 0, "draw_stacked", "the batch must hold at least one sample, got ", n);
    for (const Index label : set.labels)
        EMBER_CHECK(label >= 0 && label < 10, "draw_stacked", "label ", label, " is not a digit in [0, 10)");
    const Index plane = s[2] * s[3];
    const Tensor<float> source = set.images.contiguous();
    StackedBatch b{Tensor<float>::empty(Shape{n, 3, s[2], s[3]}), std::vector<Index>(static_cast<std::size_t>(n))};
    for (Index i = 0; i < n; ++i) {
        Index mode = 0;
        for (Index c = 0; c < 3; ++c) {
            const Index j = gen.randint(s[0]);
            std::copy_n(source.data() + j * plane, plane, b.images.data() + (i * 3 + c) * plane);
            mode = 10 * mode + set.labels[static_cast<std::size_t>(j)];
        }
        b.modes[static_cast<std::size_t>(i)] = mode;
    }
    return b;
}

}  // namespace ember
