#pragma once
/// \file
/// A batch of images as one picture, laid out like torchvision.utils.make_grid / save_image:
///
///     save_image_grid("samples.png", x, 8, -1.0, 1.0);   // x: [N, C, H, W], C = 1 or 3
///
/// Images go left to right, `nrow` per row (torchvision's name: it is the number of
/// COLUMNS), each with `padding` pixels of black around it; with N images the grid has
/// min(nrow, N) columns and ceil(N / nrow) rows, and the unused cells of the last row stay
/// black. So the picture is (H + padding) * rows + padding pixels high and
/// (W + padding) * columns + padding wide, and image i's top-left pixel is at
///
///     x = (i % columns) * (W + padding) + padding,  y = (i / columns) * (H + padding) + padding.
///
/// Values are clamped to [lo, hi] and mapped linearly to 0..255 (rounded to nearest, as
/// torchvision's save_image does). Grey images (C = 1) are written as RGB with R = G = B.
/// NaN does not fail the save: such a pixel is drawn magenta (255, 0, 255), a colour no
/// grey image has, so that samples of a diverged model are visible rather than lost
/// (for C = 3 a pixel with a NaN in any channel is magenta). +-inf clamp like any value.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>

#include "ember/core/error.hpp"
#include "ember/core/tensor.hpp"
#include "ember/io/image.hpp"

namespace ember {

/// The images [N, C, H, W] (C = 1 or 3) as one grid picture, values in [lo, hi] mapped to
/// 0..255 (see the file description).
template <Real T>
Image image_grid(const Tensor<T>& images, int nrow, double lo, double hi, int padding = 2) {
    constexpr const char* op = "image_grid";
    EMBER_CHECK(images.defined(), op, "the images tensor is undefined (default-constructed)");
    EMBER_CHECK(images.rank() == 4 && (images.dim(1) == 1 || images.dim(1) == 3), op,
                "expected images of shape [N, C, H, W] with C = 1 or 3, got ", images.shape().str(),
                images.rank() == 3 ? " (reshape [N, H, W] grey images to [N, 1, H, W])" : "");
    EMBER_CHECK(images.numel() > 0, op, "no pixels to draw: images have shape ", images.shape().str());
    EMBER_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi, op, "the value range [", lo, ", ", hi,
                "] must be finite with lo < hi");
    EMBER_CHECK(nrow >= 1, op, "nrow (images per row) must be at least 1, got ", nrow);
    EMBER_CHECK(padding >= 0 && padding <= 1024, op, "padding must be in [0, 1024], got ", padding);

    const Index n = images.dim(0), channels = images.dim(1), h = images.dim(2), w = images.dim(3);
    const Index cols = std::min<Index>(nrow, n), rows = (n + cols - 1) / cols;
    const Index width = (w + padding) * cols + padding, height = (h + padding) * rows + padding;
    EMBER_CHECK(width <= Image::kMaxSide && height <= Image::kMaxSide, op, "a grid of ", rows, "x", cols,
                " images of shape ", images.shape().str(), " with padding ", padding, " would be ", width, "x",
                height, " pixels; the limit is ", Image::kMaxSide, " a side");
    Image out(static_cast<int>(width), static_cast<int>(height), colours::black);

    const Tensor<T> x = images.contiguous();
    const T* p = x.data();
    const double scale = 255.0 / (hi - lo);
    auto byte = [&](T v) {
        return static_cast<std::uint8_t>(std::floor((std::clamp(static_cast<double>(v), lo, hi) - lo) * scale + 0.5));
    };
    const Index plane = h * w;
    for (Index i = 0; i < n; ++i) {
        const int x0 = static_cast<int>((i % cols) * (w + padding) + padding);
        const int y0 = static_cast<int>((i / cols) * (h + padding) + padding);
        const T* img = p + i * channels * plane;
        for (Index r = 0; r < h; ++r)
            for (Index c = 0; c < w; ++c) {
                const Index k = r * w + c;
                // Channel 0 stands for all three of a grey image.
                const T vr = img[k], vg = img[(channels == 3 ? plane : 0) + k], vb = img[(channels == 3 ? 2 * plane : 0) + k];
                const Rgb colour = std::isnan(vr) || std::isnan(vg) || std::isnan(vb)
                                       ? colours::nan_magenta
                                       : Rgb{byte(vr), byte(vg), byte(vb)};
                out.set(x0 + static_cast<int>(c), y0 + static_cast<int>(r), colour);
            }
    }
    return out;
}

/// Writes image_grid(images, nrow, lo, hi, padding) to `path` as a PNG file, atomically.
template <Real T>
void save_image_grid(const std::filesystem::path& path, const Tensor<T>& images, int nrow, double lo, double hi,
                     int padding = 2) {
    save_png(path, image_grid(images, nrow, lo, hi, padding));
}

}  // namespace ember
