#pragma once
/// \file
/// Normalisation layers, with PyTorch's definitions:
///
///     BatchNorm1d ([N,C] or [N,C,L]) and BatchNorm2d ([N,C,H,W]): in training, normalise
///       each channel by the batch's mean and biased variance, and update the running
///       statistics  running = (1 - momentum)·running + momentum·batch  (with the unbiased
///       variance, n/(n-1)); in evaluation, normalise by the running statistics.
///     LayerNorm(shape): normalise each sample over its trailing `shape` axes.
/// Both then scale and shift by learned per-feature weight (ones) and bias (zeros).
/// Twice differentiable, so gradient penalties pass through them; BatchNorm's normalisation
/// is one fused op (ember/ops/batch_norm.hpp).
#include <numeric>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"
#include "ember/ops/batch_norm.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember::nn {

/// BatchNorm's settings, as torch.nn.BatchNorm's arguments.
struct BatchNormOptions {
    /// Added to the variance before the square root.
    double eps = 1e-5;
    /// Weight of the current batch in the running statistics.
    double momentum = 0.1;
    /// Learn a per-channel weight and bias.
    bool affine = true;
    /// Keep running statistics and normalise by them in evaluation mode (else always by the batch).
    bool track_running_stats = true;
};

/// Batch normalisation over channel axis 1; BatchNorm1d and BatchNorm2d fix the input ranks.
template <Real T>
class BatchNorm : public Module<T> {
public:
    /// `ranks` lists the input ranks this layer accepts ({2,3} for 1d, {4} for 2d).
    BatchNorm(const char* name, std::vector<int> ranks, Index num_features, BatchNormOptions o)
        : name_(name), ranks_(std::move(ranks)), C_(num_features), o_(o) {
        EMBER_CHECK(num_features > 0, name, "num_features must be positive, got ", num_features);
        EMBER_CHECK(o.eps > 0 && o.momentum >= 0 && o.momentum <= 1, name, "need eps > 0 and momentum in [0,1], got eps=",
                    o.eps, ", momentum=", o.momentum);
        if (o.affine) {
            weight_ = this->register_parameter("weight", Tensor<T>::ones(Shape{C_}));
            bias_ = this->register_parameter("bias", Tensor<T>::zeros(Shape{C_}));
        }
        if (o.track_running_stats) {
            running_mean_ = this->register_buffer("running_mean", Tensor<T>::zeros(Shape{C_}));
            running_var_ = this->register_buffer("running_var", Tensor<T>::ones(Shape{C_}));
        }
    }

    /// The per-channel weight (undefined without affine).
    const Var<T>& weight() const { return weight_; }
    /// The per-channel bias (undefined without affine).
    const Var<T>& bias() const { return bias_; }
    /// The running mean of each channel (undefined without track_running_stats).
    const Tensor<T>& running_mean() const { return running_mean_; }
    /// The running unbiased variance of each channel (undefined without track_running_stats).
    const Tensor<T>& running_var() const { return running_var_; }

    /// x normalised per channel (by the batch in training, by the running statistics in
    /// evaluation), then scaled and shifted.
    Var<T> forward(const Var<T>& x) override {
        const Shape& xs = x.shape();
        const bool rank_ok = std::find(ranks_.begin(), ranks_.end(), xs.rank()) != ranks_.end();
        EMBER_CHECK(rank_ok && xs[1] == C_, name_, "expected input ", expected(), ", got ", xs.str());
        const Shape per_channel = channel_shape(xs);  // [1,C], [1,C,1] or [1,C,1,1]
        const bool batch_stats = this->is_training() || !o_.track_running_stats;
        Var<T> normalised;
        if (batch_stats) {
            const Index n = xs.numel() / C_;
            EMBER_CHECK(n > 1, name_, "needs more than one value per channel in training, got input ", xs.str());
            const BatchNormalized<T> bn = batch_normalize(x, o_.eps);
            normalised = bn.y;
            if (this->is_training() && o_.track_running_stats) {
                NoGrad no_grad;
                const T m = static_cast<T>(o_.momentum), unbias = static_cast<T>(n) / static_cast<T>(n - 1);
                assign(running_mean_, (T(1) - m) * running_mean_ + m * bn.mean);
                assign(running_var_, (T(1) - m) * running_var_ + (m * unbias) * bn.var);
            }
        } else {
            normalised = (x - running_mean_.reshape(per_channel)) *
                         rsqrt(running_var_.reshape(per_channel) + static_cast<T>(o_.eps));
        }
        if (!o_.affine) return normalised;
        return normalised * reshape(weight_, per_channel) + reshape(bias_, per_channel);
    }

    std::string describe() const override {
        return detail::call_string(name_, C_, "eps=" + std::to_string(o_.eps), "momentum=" + std::to_string(o_.momentum)) +
               (o_.affine ? "" : " (no affine)");
    }

private:
    Shape channel_shape(const Shape& xs) const {
        if (xs.rank() == 2) return Shape{1, C_};
        if (xs.rank() == 3) return Shape{1, C_, 1};
        return Shape{1, C_, 1, 1};
    }
    std::string expected() const {
        return ranks_.size() == 2 ? "[N," + std::to_string(C_) + "] or [N," + std::to_string(C_) + ",L]"
                                  : "[N," + std::to_string(C_) + ",H,W]";
    }

    const char* name_;
    std::vector<int> ranks_;
    Index C_;
    BatchNormOptions o_;
    Var<T> weight_, bias_;
    Tensor<T> running_mean_, running_var_;
};

/// Batch normalisation of [N, C] or [N, C, L], as torch.nn.BatchNorm1d.
template <Real T>
class BatchNorm1d : public BatchNorm<T> {
public:
    /// Normalises `num_features` channels.
    explicit BatchNorm1d(Index num_features, BatchNormOptions o = {}) : BatchNorm<T>("BatchNorm1d", {2, 3}, num_features, o) {}
};
/// Batch normalisation of [N, C, H, W], as torch.nn.BatchNorm2d.
template <Real T>
class BatchNorm2d : public BatchNorm<T> {
public:
    /// Normalises `num_features` channels.
    explicit BatchNorm2d(Index num_features, BatchNormOptions o = {}) : BatchNorm<T>("BatchNorm2d", {4}, num_features, o) {}
};

/// Layer normalisation over the trailing axes, as torch.nn.LayerNorm.
template <Real T>
class LayerNorm : public Module<T> {
public:
    /// Normalises each sample over its trailing axes `normalized_shape` (1 to 3 of them), with a
    /// learned weight and bias of that shape when `elementwise_affine`.
    explicit LayerNorm(std::vector<Index> normalized_shape, double eps = 1e-5, bool elementwise_affine = true)
        : shape_(std::move(normalized_shape)), eps_(eps) {
        EMBER_CHECK(!shape_.empty() && shape_.size() <= 3, "LayerNorm", "normalized_shape needs 1 to 3 axes, got ",
                    shape_.size());
        EMBER_CHECK(eps > 0, "LayerNorm", "eps must be positive, got ", eps);
        K_ = 1;
        for (Index d : shape_) {
            EMBER_CHECK(d > 0, "LayerNorm", "normalized_shape entries must be positive");
            K_ *= d;
        }
        if (elementwise_affine) {
            const Shape s{std::span<const Index>(shape_)};
            weight_ = this->register_parameter("weight", Tensor<T>::ones(s));
            bias_ = this->register_parameter("bias", Tensor<T>::zeros(s));
        }
    }

    /// x normalised over its trailing axes per sample, then scaled and shifted.
    Var<T> forward(const Var<T>& x) override {
        const Shape& xs = x.shape();
        const int k = static_cast<int>(shape_.size());
        bool ok = xs.rank() > k;
        for (int i = 0; ok && i < k; ++i) ok = xs[xs.rank() - k + i] == shape_[static_cast<std::size_t>(i)];
        EMBER_CHECK(ok, "LayerNorm", "expected input [N, ...] ending in ", Shape(std::span<const Index>(shape_)).str(),
                    ", got ", xs.str());
        const Var<T> rows = reshape(x, Shape{-1, K_});
        const Var<T> xc = rows - mean(rows, 1, true);
        const Var<T> var = mean(Var<T>(square(xc)), 1, true);
        const Var<T> y = reshape(Var<T>(xc * rsqrt(var + static_cast<T>(eps_))), xs);
        if (!weight_.defined()) return y;
        return y * weight_ + bias_;
    }

    std::string describe() const override {
        std::string s = "LayerNorm(";
        for (std::size_t i = 0; i < shape_.size(); ++i) s += (i ? ", " : "") + std::to_string(shape_[i]);
        return s + ", eps=" + std::to_string(eps_) + (weight_.defined() ? ")" : ", no affine)");
    }

private:
    std::vector<Index> shape_;
    Index K_ = 1;
    double eps_;
    Var<T> weight_, bias_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_NORM_INSTANCES(X, T) \
    X template class BatchNorm<T>; \
    X template class BatchNorm1d<T>; \
    X template class BatchNorm2d<T>; \
    X template class LayerNorm<T>;
EMBER_EXTERN_INSTANCES(EMBER_NORM_INSTANCES)

}  // namespace ember::nn
