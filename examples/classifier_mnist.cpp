// classifier_mnist: the small CNN that judges the other examples' samples, trained on MNIST
// (or Fashion-MNIST) by minimising the softmax cross-entropy with Adam (Kingma & Ba 2015):
//
//   min_θ  E_(x,y) [ -log softmax(f_θ(x))_y ] = E [ logsumexp_k f_θ(x)_k - f_θ(x)_y ]
//
// (ember::softmax_cross_entropy, with the stable logsumexp of docs/math.md §8.5). The network
// is in common/classifier.hpp: LeNet-style (LeCun et al. 1998), conv 32 - pool - conv 64 -
// pool - linear 128 - dropout - linear 10; its 128 penultimate features are what the Fréchet
// distance of common/quality.hpp (Heusel et al. 2017) compares. No augmentation: the plain
// network passes 99% test accuracy within a few epochs. Batch 128, Adam 1e-3.
//
// Writes to --out (default out/classifier_<dataset>, where the other examples look for it):
// metrics.csv (training loss every 50 steps; test loss and test error after every epoch),
// loss.png, errors.png (up to 100 misclassified test images), checkpoint.safetensors (every
// epoch; --resume continues from it bit for bit), summary.json and, at the end,
// classifier.safetensors: the model alone, which quality.hpp and `evaluate` load.
// --quick: 40 steps, tested on the first 1000 test images. `--help` lists the flags.
#include <ember/eval/classification.hpp>

#include "common/classifier.hpp"
#include "common/run.hpp"

namespace {

using ember::Index;
using ember::Tensor;

struct TestResult {
    double loss, accuracy;
    std::vector<Index> wrong;  // indices of the misclassified images
};

// Cross-entropy and accuracy of the network (in evaluation mode: no dropout) on the test set.
TestResult test(ember_examples::MnistClassifier& net, const Tensor<float>& images01, const std::vector<Index>& labels) {
    const ember_examples::ClassifierOutputs out = ember_examples::classify(net, images01);
    TestResult r;
    r.loss = ember::softmax_cross_entropy(ember::Var<float>(out.logits), labels).item();
    const std::vector<Index> predicted = ember::argmax(out.logits, 1);
    for (std::size_t i = 0; i < labels.size(); ++i)
        if (predicted[i] != labels[i]) r.wrong.push_back(static_cast<Index>(i));
    r.accuracy = 1.0 - static_cast<double>(r.wrong.size()) / static_cast<double>(labels.size());
    return r;
}

int train(ember_examples::ExampleOptions& o) {
    // Images in [0, 1] (the IDX pixels are 0..255) with their labels.
    const ember::ImageSet data = ember_examples::load_images(o, true);
    ember::ImageSet test_set = ember_examples::load_images(o, false);
    Tensor<float> test01 = ember::scale_to_unit(test_set.images);
    if (o.quick) {  // a smoke test need not classify all 10 000 test images
        test01 = test01.slice(0, 0, 1000).contiguous();
        test_set.labels.resize(1000);
    }
    ember::BatchIterator<float> batches(ember::scale_to_unit(data.images), data.labels,
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    ember_examples::TrainingRun run(o, {.batches_per_epoch = batches.batches_per_epoch()});

    ember::Generator init(o.seed);
    ember_examples::MnistClassifier net(init, o.seed + 1);  // seed + 1: the dropout masks
    ember::Adam<float> opt(net.parameters(), {.lr = o.lr});
    run.checkpoint.add("classifier", net).add("opt", opt, net).add("dropout", net.dropout_generator()).add("step", run.step);
    ember_examples::MetricsWindow<double> window(run, {"train_loss"}, {"test_loss", "test_error"});
    run.start({{"training images", data.images.dim(0)}, {"test images", test01.dim(0)},
               {"parameters", net.parameter_count()}});

    std::optional<TestResult> last;
    batches.seek(run.step);
    net.train();
    while (run.running()) {
        const ember::MiniBatch<float> batch = batches.next_wrapping();
        const ember::Var<float> loss = ember::softmax_cross_entropy(net(ember::Var<float>(batch.x)), batch.labels);
        opt.zero_grad();
        ember::backward(loss);
        opt.step();
        const std::int64_t step = run.finish_step();
        if (!run.epoch_done()) {
            window.add(step, {loss.item()});
            continue;
        }
        // The end of an epoch: the test set, a row of metrics.csv with it, the checkpoint.
        last = test(net, test01, test_set.labels);
        net.train();
        window.add(step, {loss.item()}, {{"test_loss", last->loss}, {"test_error", 1.0 - last->accuracy}});
        std::fflush(stdout);
        std::fprintf(stderr, "\n%s: epoch %.2f: test accuracy %.2f%% (test loss %.4f)\n", o.name.c_str(), run.epoch(),
                     100.0 * last->accuracy, last->loss);
        run.save_checkpoint();
        ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", {"train_loss", "test_loss", "test_error"},
                                 {.title = o.name + ": cross-entropy and test error", .log_y = true});
    }
    if (!last) last = test(net, test01, test_set.labels);  // --resume of a finished run

    // The model alone, for quality.hpp and evaluate; the test images it gets wrong.
    ember::Checkpoint<float> model_only;
    model_only.add("classifier", net);
    model_only.save(run.out / "classifier.safetensors", {{"example", o.name}, {"dataset", o.dataset}});  // atomic
    if (!last->wrong.empty()) {
        const Index n = std::min<Index>(static_cast<Index>(last->wrong.size()), 100);
        Tensor<float> wrong = Tensor<float>::empty(ember::Shape{n, 1, 28, 28});
        for (Index i = 0; i < n; ++i) wrong.slice(0, i, i + 1).copy_from(test01.slice(0, last->wrong[i], last->wrong[i] + 1));
        ember::save_image_grid(run.out / "errors.png", wrong, std::min<Index>(n, 10), 0.0, 1.0);
    }
    run.result("test accuracy", last->accuracy);
    run.result("test loss", last->loss);
    run.result("test errors", static_cast<double>(last->wrong.size()));
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "classifier_mnist", o.epochs = 5, o.batch = 128, o.lr = 1e-3;
    o.out = "out/classifier_mnist";  // out/classifier_<dataset>, where the other examples' --classifier looks
    ember_examples::Flags flags("classifier_mnist: the small CNN classifier behind the examples' sample-quality numbers", o);
    return flags.run(argc, argv, {.iters = 40}, [&] {
        if (!flags.given("--out")) o.out = "out/classifier_" + o.dataset;
        return train(o);
    });
}
