#pragma once
// Sample quality of generated MNIST digits, judged by the classifier of classifier_mnist
// (common/classifier.hpp), as every MNIST example prints at its end and `evaluate` prints
// for any samples.npy:
//
//   histogram    the share of samples the classifier assigns to each digit (argmax)
//   KL(h || U)   Σ_k h_k log(10 h_k): 0 when all ten digits are equally frequent, log 10 ≈ 2.30
//                when every sample is the same digit (ember::kl_to_uniform)
//   confidence   the mean over samples of the largest softmax probability: how clearly the
//                samples look like some digit
//   Fréchet      d² = |μ_s - μ_t|² + tr(Σ_s + Σ_t - 2 (Σ_s^{1/2} Σ_t Σ_s^{1/2})^{1/2}) between
//                Gaussian fits of the classifier's 128 penultimate features of the samples and
//                of the whole test set (ember::frechet_distance; FID's formula, on this
//                classifier's features instead of Inception's, so the numbers are not FIDs)
//
// The test set's features are computed each time (10 000 forward passes of the small CNN,
// a few seconds), not cached: no stale cache can outlive a retrained classifier.
//
//   if (auto q = ember_examples::report_sample_quality(o, samples01)) ...   // prints one line
#include <array>
#include <cmath>
#include <cstdio>
#include <ember/ember.hpp>
#include <ember/eval/classification.hpp>
#include <ember/eval/frechet.hpp>
#include <filesystem>
#include <optional>
#include <string>

#include "classifier.hpp"
#include "example.hpp"

namespace ember_examples {

struct SampleQuality {
    std::array<double, 10> histogram;
    double kl_uniform, confidence, frechet;
};

// Loads the classifier written by classifier_mnist (classifier.safetensors: the model only).
inline void load_classifier(MnistClassifier& net, const std::filesystem::path& path) {
    ember::Checkpoint<float> file;
    file.add("classifier", net);
    file.load(path);
    net.eval();
}

// Checks that `images` are float images [N,1,28,28] or [N,784] with values in [0,1] and
// returns them as [N,1,28,28]; `what` names them in the error.
inline ember::Tensor<float> as_unit_images(const ember::Tensor<float>& images, const std::string& what) {
    const bool flat = images.rank() == 2 && images.dim(1) == 784;
    const bool square = images.rank() == 4 && images.dim(1) == 1 && images.dim(2) == 28 && images.dim(3) == 28;
    EMBER_CHECK(flat || square, what.c_str(), "expected images of shape [N,1,28,28] or [N,784], got ",
                images.shape().str());
    const ember::Index n = images.dim(0);
    EMBER_CHECK(n >= 2, what.c_str(), "need at least 2 images for a covariance, got ", n);
    const ember::Tensor<float> c = images.contiguous();
    for (ember::Index i = 0; i < c.numel(); ++i) {
        const float v = c.data()[i];
        EMBER_CHECK(std::isfinite(v) && v >= 0.0f && v <= 1.0f, what.c_str(), "pixel values must be in [0,1]; value ", v,
                    " at flat index ", i, " (of image ", i / 784, ")");
    }
    return c.reshape(ember::Shape{n, 1, 28, 28});
}

// The test images of o.dataset, [10000,1,28,28] in [0,1].
inline ember::Tensor<float> test_images01(const ExampleOptions& o) {
    const ember::ImageSet test = ember::load_image_set(ember::find_dataset(dataset_of(o), o.data), false);
    return ember::scale_to_unit(test.images);  // the IDX pixels are 0..255
}

// The Gaussian fit of the classifier's features of the test images.
inline ember::GaussianFit test_feature_gaussian(MnistClassifier& net, const ember::Tensor<float>& test01) {
    return ember::fit_gaussian(classify(net, test01).features);
}

// All four numbers for `samples01` ([N,1,28,28] in [0,1]) against the test set's features.
inline SampleQuality sample_quality(MnistClassifier& net, const ember::Tensor<float>& samples01,
                                    const ember::GaussianFit& test) {
    const ember::Tensor<float> images = as_unit_images(samples01, "sample_quality");
    const ClassifierOutputs out = classify(net, images);
    const ember::Tensor<float> p = ember::softmax_rows(out.logits);
    const std::vector<double> h = ember::class_histogram(ember::argmax(p, 1), MnistClassifier::classes);
    SampleQuality q{};
    std::copy(h.begin(), h.end(), q.histogram.begin());
    q.kl_uniform = ember::kl_to_uniform(h);
    q.confidence = static_cast<double>(ember::mean(ember::max(p, 1)).item());
    q.frechet = ember::frechet_distance(ember::fit_gaussian(out.features), test);
    return q;
}

// "histogram [0.101 0.098 ...], KL to uniform 0.0123, confidence 0.953, Fréchet 12.3"
inline std::string format_quality(const SampleQuality& q) {
    std::string s = "histogram [";
    char buf[96];
    for (std::size_t k = 0; k < q.histogram.size(); ++k) {
        std::snprintf(buf, sizeof buf, "%s%.3f", k ? " " : "", q.histogram[k]);
        s += buf;
    }
    std::snprintf(buf, sizeof buf, "], KL to uniform %.4f, confidence %.3f, Frechet distance %.3f", q.kl_uniform,
                  q.confidence, q.frechet);
    return s + buf;
}

// The path of the classifier the run's options name (--classifier, or classifier_mnist's
// checkpoint for o.dataset) if it exists; otherwise prints one line "<o.name>: <what>: no
// classifier ..." saying how to get one, and returns std::nullopt.
inline std::optional<std::string> find_classifier(const ExampleOptions& o, const char* what) {
    const std::string path =
        o.classifier.empty() ? "out/classifier_" + o.dataset + "/classifier.safetensors" : o.classifier;
    if (std::filesystem::exists(path)) return path;
    std::printf("%s: %s: no classifier at %s (train one with `classifier_mnist --dataset %s`, or pass "
                "--classifier PATH)\n",
                o.name.c_str(), what, path.c_str(), o.dataset.c_str());
    std::fflush(stdout);
    return std::nullopt;
}

// If o.classifier names an existing checkpoint: classifies samples01 ([N,1,28,28] in [0,1]),
// compares with the test set of o.dataset, prints one line "<o.name>: quality ..." and returns it;
// otherwise prints one line saying how to get the classifier and returns std::nullopt.
inline std::optional<SampleQuality> report_sample_quality(const ExampleOptions& o, const ember::Tensor<float>& samples01) {
    const std::optional<std::string> found = find_classifier(o, "quality");
    if (!found) return std::nullopt;
    const std::string& path = *found;
    ember::Generator init(0);
    MnistClassifier net(init);
    load_classifier(net, path);
    const ember::GaussianFit test = test_feature_gaussian(net, test_images01(o));
    const SampleQuality q = sample_quality(net, samples01, test);
    std::printf("%s: quality of %lld samples (classifier %s, vs %lld %s test images): %s\n", o.name.c_str(),
                static_cast<long long>(samples01.dim(0)), path.c_str(), static_cast<long long>(test.n),
                o.dataset.c_str(), format_quality(q).c_str());
    std::fflush(stdout);
    return q;
}

}  // namespace ember_examples
