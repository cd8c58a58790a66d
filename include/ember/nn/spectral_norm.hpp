#pragma once
/// \file
/// Spectral normalisation (Miyato et al.\ 2018), as GAN critics and EBM energies use it to
/// bound their Lipschitz constant: the layer computes with W / σ(W), where σ(W) is W's
/// largest singular value, estimated by power iteration on persistent vectors u and v:
///
///     v ← normalise(Wᵀu),  u ← normalise(W v)     (n_power_iterations times, training only)
///     σ = uᵀ W v                                  (u, v constants: gradients flow through W)
/// W is viewed as a matrix with the layer's output features as rows ([out, in·k·k]).
///
/// The wrapper keeps PyTorch's names (torch.nn.utils.spectral_norm): parameters
/// "weight_orig" and "bias", buffers "weight_u" and "weight_v", so state dicts interchange.
/// Like torch.nn.utils.parametrizations.spectral_norm, u and v are first refined by 15
/// iterations at construction, so σ is accurate from the first step.
#include <cmath>
#include <memory>

#include <Eigen/Core>

#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/nn/layer.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember::nn {

/// Settings of SpectralNorm.
struct SpectralNormOptions {
    /// Power iterations per training forward pass.
    int n_power_iterations = 1;
    /// Keeps the normalisation of u and v away from a division by zero.
    double eps = 1e-12;
};

/// A layer whose weight is divided by its largest singular value (see the file description).
template <Real T>
class SpectralNorm : public Module<T> {
public:
    /// Wraps `layer`, adopting its parameters; u and v start from normal draws of `gen`.
    SpectralNorm(std::shared_ptr<WeightedLayer<T>> layer, Generator& gen, SpectralNormOptions o = {})
        : layer_(std::move(layer)), o_(o) {
        EMBER_CHECK(layer_ != nullptr, "SpectralNorm", "the wrapped layer is null");
        EMBER_CHECK(o.n_power_iterations >= 0 && o.eps > 0, "SpectralNorm",
                    "need n_power_iterations >= 0 and eps > 0, got ", o.n_power_iterations, " and ", o.eps);
        weight_ = this->register_parameter("weight_orig", layer_->weight());
        if (layer_->bias().defined()) this->register_parameter("bias", layer_->bias());
        const Shape& ws = weight_.shape();
        rows_ = ws[layer_->output_axis()];
        cols_ = ws.numel() / rows_;
        u_ = this->register_buffer("weight_u", normal<T>(Shape{rows_}, gen));
        v_ = this->register_buffer("weight_v", normal<T>(Shape{cols_}, gen));
        normalize(u_);
        normalize(v_);
        power_iterations(15);
    }

    /// The wrapped layer's output computed with normalized_weight().
    Var<T> forward(const Var<T>& x) override { return layer_->forward_with_weight(x, normalized_weight()); }

    /// W / σ(W), running the power iteration first when training.
    Var<T> normalized_weight() {
        if (this->is_training()) power_iterations(o_.n_power_iterations);
        const Var<T> Wv = matmul(weight_matrix(weight_), Var<T>(v_.reshape(Shape{cols_, 1})));
        const Var<T> sigma = sum(Var<T>(Wv * u_.reshape(Shape{rows_, 1})));
        return weight_ / sigma;
    }
    /// The current estimate of σ(W), without a graph.
    T sigma() const {
        const Tensor<T> W = weight_matrix(Var<T>(weight_.value())).value().contiguous();
        const auto Wm = matrix(W);
        return vec(u_).dot(Wm * vec(v_));
    }

    std::string describe() const override { return "SpectralNorm(" + layer_->describe() + ")"; }

private:
    using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Vector = Eigen::Matrix<T, Eigen::Dynamic, 1>;

    Var<T> weight_matrix(const Var<T>& w) const {
        if (layer_->output_axis() == 0) return reshape(w, Shape{rows_, cols_});
        return reshape(transpose(w, 0, layer_->output_axis()), Shape{rows_, cols_});
    }
    Eigen::Map<const Matrix> matrix(const Tensor<T>& W) const { return {W.data(), rows_, cols_}; }
    static Eigen::Map<Vector> vec(const Tensor<T>& t) { return {t.data(), t.numel()}; }
    void normalize(const Tensor<T>& t) const {
        auto m = vec(t);
        m /= std::max(m.norm(), static_cast<T>(o_.eps));
    }
    void power_iterations(int n) {
        if (n <= 0) return;
        const Tensor<T> W = weight_matrix(Var<T>(weight_.value())).value().contiguous();
        const auto Wm = matrix(W);
        for (int i = 0; i < n; ++i) {
            vec(v_).noalias() = Wm.transpose() * vec(u_);
            normalize(v_);
            vec(u_).noalias() = Wm * vec(v_);
            normalize(u_);
        }
    }

    std::shared_ptr<WeightedLayer<T>> layer_;
    SpectralNormOptions o_;
    Var<T> weight_;
    Tensor<T> u_, v_;
    Index rows_ = 0, cols_ = 0;
};

/// spectral_norm(std::make_shared<Linear<float>>(784, 512, gen), gen)
template <Real T, class L>
std::shared_ptr<SpectralNorm<T>> spectral_norm(std::shared_ptr<L> layer, Generator& gen, SpectralNormOptions o = {}) {
    return std::make_shared<SpectralNorm<T>>(std::move(layer), gen, o);
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_SPECTRAL_NORM_INSTANCES(X, T) \
    X template class SpectralNorm<T>;
EMBER_EXTERN_INSTANCES(EMBER_SPECTRAL_NORM_INSTANCES)

}  // namespace ember::nn
