#pragma once
// The small CNN that judges generated digits: classifier_mnist trains it, quality.hpp and
// evaluate use it to classify samples and to embed them for the Fréchet distance.
//
//   input  x [N,1,28,28] in [0,1], standardised with the MNIST training mean/std inside
//   features:  conv 3x3 1->32, ReLU, avgpool 2  (28 -> 14)
//              conv 3x3 32->64, ReLU, avgpool 2 (14 -> 7)
//              flatten 3136 -> linear 128, ReLU          <- the 128 features of the FD
//   head:      dropout 0.5 (training only), linear 128 -> 10 logits
//
// About 4.3 M multiply-adds per image forward: small enough to train in a few minutes per
// epoch on one core, big enough for > 99% test accuracy. Average rather than max pooling:
// ember's max_pool2d is about 6x slower than avg_pool2d here (a gather through an index
// table), and LeNet-style average pooling reaches the same accuracy on MNIST.
// Parameters are named "features.0.weight", ..., "head.weight".
#include <ember/ember.hpp>
#include <memory>

namespace ember_examples {

class MnistClassifier : public ember::nn::Module<float> {
public:
    static constexpr ember::Index feature_dim = 128, classes = 10;

    // `init` draws the initial weights, `dropout_seed` seeds the dropout masks.
    explicit MnistClassifier(ember::Generator& init, std::uint64_t dropout_seed = 0) {
        namespace nn = ember::nn;
        features_ = register_module("features", std::make_shared<nn::Sequential<float>>());
        features_->add<nn::Conv2d>(1, 32, 3, init, nn::Conv2dOptions{.padding = 1});
        features_->add<nn::ReLU>();
        features_->add<nn::AvgPool2d>(2);
        features_->add<nn::Conv2d>(32, 64, 3, init, nn::Conv2dOptions{.padding = 1});
        features_->add<nn::ReLU>();
        features_->add<nn::AvgPool2d>(2);
        features_->add<nn::Flatten>();
        features_->add<nn::Linear>(64 * 7 * 7, feature_dim, init);
        features_->add<nn::ReLU>();
        dropout_ = register_module("dropout", std::make_shared<nn::Dropout<float>>(0.5, dropout_seed));
        head_ = register_module("head", std::make_shared<nn::Linear<float>>(feature_dim, classes, init));
    }

    // Logits [N, 10] of images [N,1,28,28] in [0,1].
    ember::Var<float> forward(const ember::Var<float>& x) override { return (*head_)((*dropout_)(embed(x))); }
    std::string describe() const override { return "MnistClassifier"; }

    // The penultimate features [N, 128] of images [N,1,28,28] in [0,1].
    ember::Var<float> embed(const ember::Var<float>& x) {
        EMBER_CHECK(x.rank() == 4 && x.dim(1) == 1 && x.dim(2) == 28 && x.dim(3) == 28, "MnistClassifier",
                    "expected images [N,1,28,28], got ", x.shape().str());
        // Standardise with MNIST's training-set pixel mean and std (as torchvision's examples):
        // inputs near zero mean and unit scale train faster with the default initialisation.
        return (*features_)(ember::Var<float>((x - 0.1307f) * (1.0f / 0.3081f)));
    }
    ember::Var<float> logits_from_features(const ember::Var<float>& f) { return (*head_)((*dropout_)(f)); }

    ember::Generator& dropout_generator() { return dropout_->generator(); }

private:
    std::shared_ptr<ember::nn::Sequential<float>> features_;
    std::shared_ptr<ember::nn::Dropout<float>> dropout_;
    std::shared_ptr<ember::nn::Linear<float>> head_;
};

// Logits and features of many images, in evaluation mode and batches (no graph).
struct ClassifierOutputs {
    ember::Tensor<float> logits;    // [N, 10]
    ember::Tensor<float> features;  // [N, 128]
};
inline ClassifierOutputs classify(MnistClassifier& net, const ember::Tensor<float>& images01, ember::Index batch = 500) {
    EMBER_CHECK(images01.rank() == 4 && images01.dim(0) > 0, "classify", "expected images [N,1,28,28], got ",
                images01.shape().str());
    const bool was_training = net.is_training();
    net.eval();
    ember::NoGrad no_grad;
    const ember::Index n = images01.dim(0);
    ClassifierOutputs out{ember::Tensor<float>::empty(ember::Shape{n, MnistClassifier::classes}),
                          ember::Tensor<float>::empty(ember::Shape{n, MnistClassifier::feature_dim})};
    for (ember::Index i = 0; i < n; i += batch) {
        const ember::Index j = std::min(n, i + batch);
        const ember::Var<float> f = net.embed(ember::Var<float>(images01.slice(0, i, j).contiguous()));
        const ember::Var<float> z = net.logits_from_features(f);
        out.features.slice(0, i, j).copy_from(f.value());
        out.logits.slice(0, i, j).copy_from(z.value());
    }
    net.train(was_training);
    return out;
}

}  // namespace ember_examples
