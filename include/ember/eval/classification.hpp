#pragma once
/// \file
/// What a classifier is trained with and what its predictions on generated images say:
/// the softmax cross-entropy, softmax probabilities, the class histogram of the predictions
/// and its KL divergence to the uniform distribution over the classes.
///
///     Var<float> loss = ember::softmax_cross_entropy(logits, labels);    // training
///     Tensor<float> p = ember::softmax_rows(logits.value());              // [N, K]
///     std::vector<double> h = ember::class_histogram(ember::argmax(p, 1), 10);
///     double kl = ember::kl_to_uniform(h);     // 0 when every class is equally frequent
///
///     cross-entropy    L = (1/N) Σ_i [ logsumexp_k z_ik - z_{i,y_i} ]    (= -mean log softmax(z)_{y})
///     KL to uniform    KL(h || U_K) = Σ_k h_k log(K h_k),  0 log 0 = 0,  in [0, log K]
/// KL(h || U) = log K - H(h): 0 when all K classes are predicted equally often, log K when
/// every sample falls into one class (mode collapse).
#include <cmath>
#include <vector>

#include "ember/autodiff/var.hpp"
#include "ember/core/instances.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember {

/// Mean softmax cross-entropy of logits [N, K] against labels (N class indices in [0, K)).
template <Real T>
Var<T> softmax_cross_entropy(const Var<T>& logits, const std::vector<Index>& labels) {
    EMBER_CHECK(logits.rank() == 2, "softmax_cross_entropy", "expected logits [N, K], got shape ", logits.shape().str());
    EMBER_CHECK(static_cast<Index>(labels.size()) == logits.dim(0) && logits.dim(0) > 0, "softmax_cross_entropy",
                labels.size(), " labels for logits of shape ", logits.shape().str());
    const Tensor<T> y = one_hot<T>(labels, logits.dim(1));  // checks every label is in [0, K)
    const Var<T> picked = sum(Var<T>(logits * y), 1);      // z_{i, y_i}
    return mean(Var<T>(logsumexp(logits, 1) - picked));
}

/// Softmax along the rows of logits [N, K], computed as exp(z - logsumexp(z)).
template <Real T>
Tensor<T> softmax_rows(const Tensor<T>& logits) {
    EMBER_CHECK(logits.rank() == 2, "softmax_rows", "expected logits [N, K], got shape ", logits.shape().str());
    return Tensor<T>(exp(logits - logsumexp(logits, 1, true)));
}

/// The share of each class among `labels` (K entries summing to 1).
inline std::vector<double> class_histogram(const std::vector<Index>& labels, Index classes) {
    EMBER_CHECK(classes > 0, "class_histogram", "number of classes must be positive, got ", classes);
    EMBER_CHECK(!labels.empty(), "class_histogram", "no labels");
    std::vector<double> h(static_cast<std::size_t>(classes), 0.0);
    for (Index l : labels) {
        EMBER_CHECK(l >= 0 && l < classes, "class_histogram", "label ", l, " out of range [0,", classes, ")");
        h[static_cast<std::size_t>(l)] += 1.0;
    }
    for (double& v : h) v /= static_cast<double>(labels.size());
    return h;
}

/// KL(h || uniform) = Σ_k h_k log(K h_k) with 0 log 0 = 0, for a distribution h over K classes.
inline double kl_to_uniform(const std::vector<double>& h) {
    EMBER_CHECK(!h.empty(), "kl_to_uniform", "empty histogram");
    double total = 0;
    for (double v : h) {
        EMBER_CHECK(std::isfinite(v) && v >= 0, "kl_to_uniform", "histogram entries must be finite and >= 0, got ", v);
        total += v;
    }
    EMBER_CHECK(std::abs(total - 1.0) < 1e-6, "kl_to_uniform", "histogram must sum to 1, sums to ", total);
    const double K = static_cast<double>(h.size());
    double kl = 0;
    for (double v : h)
        if (v > 0) kl += v * std::log(K * v);
    return std::max(kl, 0.0);  // rounding can leave -1e-17 for an exactly uniform h
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CLASSIFICATION_INSTANCES(X, T) \
    X template Var<T> softmax_cross_entropy<T>(const Var<T>&, const std::vector<Index>&); \
    X template Tensor<T> softmax_rows<T>(const Tensor<T>&);
EMBER_EXTERN_INSTANCES(EMBER_CLASSIFICATION_INSTANCES)

}  // namespace ember
