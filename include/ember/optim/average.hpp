#pragma once
/// \file
/// An exponential moving average of a model's weights (Polyak averaging with exponential
/// forgetting), the cheap fix for a GAN generator whose iterates circle around a good point
/// rather than settle on it: the average of the iterates is closer to it than the last one
/// (Yazıcı et al.\ 2019, "The unusual effectiveness of averaging in GAN training").
///
///     nn::Sequential<float> G = make_generator(init), G_avg = make_generator(init2);
///     ExponentialMovingAverage<float> ema(G_avg, G, {.decay = 0.999});   // G_avg := G
///     for (...) { ...; opt_G.step(); ema.update(); }                     // G_avg ← d·G_avg + (1-d)·G
///     samples = G_avg.infer(z);
///
/// The average lives in a second module of the same architecture, so it is used, saved and
/// loaded like any module (Checkpoint::add, infer); update_count() goes into the checkpoint too
/// when the warm-up is on. After update number n the decay used is
///
///     d_n = min(decay, (1 + n) / (10 + n))   with the warm-up (TensorFlow's ExponentialMovingAverage
///                                            with num_updates), d_n = decay without it,
/// so early in training the average does not remember the random initial weights for ~1/(1-decay)
/// steps. Buffers (BatchNorm's running statistics) are averaged the same way by default, as
/// PyTorch's AveragedModel(use_buffers=True) does: the averaged statistics then belong to the
/// averaged weights' recent past rather than to the last iterate's. `.buffers = false` copies
/// them at each update instead, which is what spectral normalisation's power-iteration vectors
/// (unit vectors, not statistics) want.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/nn/module.hpp"

namespace ember {

/// Settings of ExponentialMovingAverage.
struct EmaOptions {
    double decay = 0.999;   ///< the average's memory is about 1/(1 - decay) updates
    bool warmup = true;     ///< d_n = min(decay, (1+n)/(10+n))
    bool buffers = true;    ///< average the buffers too (else copy them at each update)
};

/// An exponential moving average of a model's weights, kept in a second module of the same
/// architecture (see the file description).
template <Real T>
class ExponentialMovingAverage {
public:
    /// Keeps references to both modules (they must outlive this object) and starts the average
    /// at the model's current state. The two must have the same parameter and buffer names and
    /// shapes (the same architecture).
    ExponentialMovingAverage(nn::Module<T>& average, const nn::Module<T>& model, EmaOptions options = {})
        : opts_(options) {
        EMBER_CHECK(options.decay >= 0 && options.decay <= 1, "ExponentialMovingAverage",
                    "decay must be in [0, 1], got ", options.decay);
        auto pair_up = [](const auto& avg, const auto& cur, const char* what, auto& pairs) {
            EMBER_CHECK(avg.size() == cur.size(), "ExponentialMovingAverage", "the average has ", avg.size(), " ",
                        what, " and the model ", cur.size(), ": not the same architecture");
            for (std::size_t i = 0; i < avg.size(); ++i) {
                const Tensor<T> a = value_of(avg[i].second), c = value_of(cur[i].second);
                EMBER_CHECK(avg[i].first == cur[i].first && a.shape() == c.shape(), "ExponentialMovingAverage",
                            what, " '", avg[i].first, "' ", a.shape(), " of the average does not match '",
                            cur[i].first, "' ", c.shape(), " of the model");
                pairs.emplace_back(a, c);
            }
        };
        pair_up(average.named_parameters(), model.named_parameters(), "parameters", params_);
        pair_up(average.named_buffers(), model.named_buffers(), "buffers", buffers_);
        copy_model();
    }

    /// One step of the average, after the model's optimiser step.
    void update() {
        ++count_;
        const double n = static_cast<double>(count_);
        const double d = opts_.warmup ? std::min(opts_.decay, (1 + n) / (10 + n)) : opts_.decay;
        NoGrad no_grad;
        for (auto& [avg, cur] : params_) assign(avg, avg * d + cur * (1 - d));
        for (auto& [avg, cur] : buffers_) {
            if (opts_.buffers) assign(avg, avg * d + cur * (1 - d));
            else assign(avg, cur);
        }
    }

    /// Restart the average at the model's current weights (the update count goes back to 0).
    void reset() {
        count_ = 0;
        copy_model();
    }

    /// Updates so far: register it with a Checkpoint so that a resumed run continues the warm-up.
    std::int64_t& update_count() { return count_; }
    /// The settings.
    const EmaOptions& options() const { return opts_; }

private:
    static Tensor<T> value_of(const Var<T>& v) { return v.value(); }
    static Tensor<T> value_of(const Tensor<T>& t) { return t; }

    void copy_model() {
        NoGrad no_grad;
        for (auto& [avg, cur] : params_) assign(avg, cur);
        for (auto& [avg, cur] : buffers_) assign(avg, cur);
    }

    EmaOptions opts_;
    std::int64_t count_ = 0;
    std::vector<std::pair<Tensor<T>, Tensor<T>>> params_, buffers_;  // (average, model) storage handles
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_AVERAGE_INSTANCES(X, T) \
    X template class ExponentialMovingAverage<T>;
EMBER_EXTERN_INSTANCES(EMBER_AVERAGE_INSTANCES)

}  // namespace ember
