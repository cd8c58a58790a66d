#pragma once
/// \file
/// Layers that move data without parameters: Flatten, Reshape, nearest Upsample, and
/// average / max pooling.
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/pool.hpp"
#include "ember/ops/shape.hpp"

namespace ember::nn {

/// [N, d1, d2, ...] -> [N, d1·d2·...] (axes from `start_axis` on are merged).
template <Real T>
class Flatten : public Module<T> {
public:
    /// Merges the axes from `start_axis` on.
    explicit Flatten(int start_axis = 1) : start_(start_axis) {}
    /// x with the axes from start_axis on merged into one.
    Var<T> forward(const Var<T>& x) override { return flatten(x, start_); }
    std::string describe() const override { return detail::call_string("Flatten", start_); }

private:
    int start_;
};

/// [N, ...] -> [N, shape...]: the batch axis is kept, one entry of `shape` may be -1.
template <Real T>
class Reshape : public Module<T> {
public:
    /// Reshapes each sample to `shape` (1 to 3 dimensions; one may be -1).
    explicit Reshape(std::vector<Index> shape) : shape_(std::move(shape)) {
        EMBER_CHECK(!shape_.empty() && shape_.size() <= 3, "Reshape", "expects 1 to 3 non-batch dimensions, got ",
                    shape_.size());
    }
    /// x reshaped to [N, shape...].
    Var<T> forward(const Var<T>& x) override {
        EMBER_CHECK(x.rank() >= 1, "Reshape", "input needs a batch axis, got shape ", x.shape().str());
        std::vector<Index> dims{x.dim(0)};
        dims.insert(dims.end(), shape_.begin(), shape_.end());
        return reshape(x, Shape(std::span<const Index>(dims)));
    }
    std::string describe() const override {
        std::string s = "Reshape(N";
        for (Index d : shape_) s += ", " + std::to_string(d);
        return s + ")";
    }

private:
    std::vector<Index> shape_;
};

/// Nearest-neighbour upsampling of [N, C, H, W] by an integer factor.
template <Real T>
class Upsample : public Module<T> {
public:
    /// Upsamples by `scale_factor` (>= 1).
    explicit Upsample(Index scale_factor) : factor_(scale_factor) {
        EMBER_CHECK(scale_factor >= 1, "Upsample", "scale factor must be >= 1, got ", scale_factor);
    }
    /// x [N, C, H, W] upsampled to [N, C, H·f, W·f].
    Var<T> forward(const Var<T>& x) override { return upsample2d(x, factor_); }
    std::string describe() const override { return detail::call_string("Upsample", factor_); }

private:
    Index factor_;
};

/// stride 0 means stride = kernel, as PyTorch's default.
template <Real T>
class AvgPool2d : public Module<T> {
public:
    /// Averages over `kernel` x `kernel` windows with the given stride (0: the kernel size) and
    /// zero padding.
    explicit AvgPool2d(Index kernel, Index stride = 0, Index padding = 0) : k_(kernel), s_(stride), p_(padding) {}
    /// The window averages of x [N, C, H, W].
    Var<T> forward(const Var<T>& x) override { return avg_pool2d(x, k_, s_, p_); }
    std::string describe() const override { return detail::call_string("AvgPool2d", k_, s_ ? s_ : k_, p_); }

private:
    Index k_, s_, p_;
};
/// Max pooling of [N, C, H, W]; stride 0 means stride = kernel, as PyTorch's default.
template <Real T>
class MaxPool2d : public Module<T> {
public:
    /// Takes the maximum over `kernel` x `kernel` windows with the given stride (0: the kernel
    /// size) and padding.
    explicit MaxPool2d(Index kernel, Index stride = 0, Index padding = 0) : k_(kernel), s_(stride), p_(padding) {}
    /// The window maxima of x [N, C, H, W].
    Var<T> forward(const Var<T>& x) override { return max_pool2d(x, k_, s_, p_); }
    std::string describe() const override { return detail::call_string("MaxPool2d", k_, s_ ? s_ : k_, p_); }

private:
    Index k_, s_, p_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_RESHAPING_INSTANCES(X, T) \
    X template class Flatten<T>; \
    X template class Reshape<T>; \
    X template class Upsample<T>; \
    X template class AvgPool2d<T>; \
    X template class MaxPool2d<T>;
EMBER_EXTERN_INSTANCES(EMBER_RESHAPING_INSTANCES)

}  // namespace ember::nn
