#pragma once
/// \file
/// Binary masks that split a sample into the part a coupling layer conditions on (mask 1,
/// copied unchanged) and the part it transforms (mask 0). Successive couplings flip the
/// mask, so every coordinate is transformed by some layer (RealNVP, Dinh et al. 2017):
///
///     half_mask(D)              vectors [D]: 1 on the first ⌈D/2⌉ features ("alternating
///                               halves" with flip = true on every other layer);
///     checkerboard_mask(C,H,W)  images [C,H,W]: 1 where h + w is even, for every channel;
///     channel_mask(C,H,W)       images [C,H,W]: 1 on the first ⌈C/2⌉ channels (after a
///                               squeeze, so the two halves hold interleaved pixels).
/// flip = true gives 1 - mask.
#include "ember/core/instances.hpp"
#include "ember/core/tensor.hpp"

namespace ember::flow {

/// A [features] mask: 1 on the first ⌈features/2⌉ features (flip: 1 - that).
template <Real T>
Tensor<T> half_mask(Index features, bool flip = false) {
    EMBER_CHECK(features >= 2, "half_mask", "needs at least 2 features to split, got ", features);
    Tensor<T> m = Tensor<T>::empty(Shape{features});
    const Index first = (features + 1) / 2;
    for (Index i = 0; i < features; ++i) m.data()[i] = (i < first) != flip ? T(1) : T(0);
    return m;
}

/// A [C,H,W] mask: 1 where h + w is even, for every channel (flip: 1 - that).
template <Real T>
Tensor<T> checkerboard_mask(Index channels, Index height, Index width, bool flip = false) {
    EMBER_CHECK(channels >= 1 && height >= 1 && width >= 1 && height * width >= 2, "checkerboard_mask",
                "needs at least 2 pixels, got [C,H,W] = [", channels, ",", height, ",", width, "]");
    Tensor<T> m = Tensor<T>::empty(Shape{channels, height, width});
    for (Index c = 0; c < channels; ++c)
        for (Index h = 0; h < height; ++h)
            for (Index w = 0; w < width; ++w) m.data()[(c * height + h) * width + w] = ((h + w) % 2 == 0) != flip ? T(1) : T(0);
    return m;
}

/// A [C,H,W] mask: 1 on the first ⌈C/2⌉ channels (flip: 1 - that).
template <Real T>
Tensor<T> channel_mask(Index channels, Index height, Index width, bool flip = false) {
    EMBER_CHECK(channels >= 2 && height >= 1 && width >= 1, "channel_mask",
                "needs at least 2 channels, got [C,H,W] = [", channels, ",", height, ",", width, "]");
    Tensor<T> m = Tensor<T>::empty(Shape{channels, height, width});
    const Index first = (channels + 1) / 2, plane = height * width;
    for (Index c = 0; c < channels; ++c)
        for (Index i = 0; i < plane; ++i) m.data()[c * plane + i] = (c < first) != flip ? T(1) : T(0);
    return m;
}

namespace detail {
// A coupling mask must be 0/1 and contain both: with no 1 there is nothing to condition
// on, with no 0 the layer is the identity.
template <Real T>
void check_mask(const Tensor<T>& mask, const char* op) {
    EMBER_CHECK(mask.defined() && (mask.rank() == 1 || mask.rank() == 3), op,
                "mask must be [D] (vectors) or [C,H,W] (images), got ", mask.defined() ? mask.shape().str() : "undefined");
    bool zero = false, one = false;
    for (Index i = 0; i < mask.numel(); ++i) {
        const T v = mask.flat(i);
        EMBER_CHECK(v == T(0) || v == T(1), op, "mask values must be 0 or 1, element ", i, " is ", v);
        zero = zero || v == T(0);
        one = one || v == T(1);
    }
    EMBER_CHECK(zero && one, op, "mask of shape ", mask.shape().str(), " must contain both 0s and 1s");
}
}  // namespace detail

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_MASKS_INSTANCES(X, T) \
    X template Tensor<T> half_mask<T>(Index, bool); \
    X template Tensor<T> checkerboard_mask<T>(Index, Index, Index, bool); \
    X template Tensor<T> channel_mask<T>(Index, Index, Index, bool);
EMBER_EXTERN_INSTANCES(EMBER_MASKS_INSTANCES)

}  // namespace ember::flow
