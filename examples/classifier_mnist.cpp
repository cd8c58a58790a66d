// classifier_mnist: the small CNN that judges the other examples' samples (issue 7), trained
// on MNIST (or Fashion-MNIST) by minimising the softmax cross-entropy with Adam.
//
//   min_θ  E_(x,y) [ -log softmax(f_θ(x))_y ] = E [ logsumexp_k f_θ(x)_k - f_θ(x)_y ]
//
// The network is in common/classifier.hpp (conv 32 - pool - conv 64 - pool - linear 128 -
// dropout - linear 10); its 128 penultimate features are what the Fréchet distance of
// common/quality.hpp compares. No augmentation: the plain network passes 99% test accuracy
// within a few epochs.
//
//   classifier_mnist [--data DIR] [--dataset mnist|fashion] [--out DIR] [--epochs N | --iters N]
//                    [--batch N] [--lr X] [--seed N] [--threads N] [--resume] [--quick]
//
// Writes to --out (default out/classifier_<dataset>, where the other examples look for it):
// metrics.csv (training loss every 50 steps; test loss and test error after every epoch),
// loss.png, errors.png (up to 100 misclassified test images), checkpoint.safetensors (every
// epoch and at the end; --resume continues from it bit for bit) and, at the end,
// classifier.safetensors: the model alone, which quality.hpp and `evaluate` load.
// --quick: 40 steps, tested on the first 1000 test images.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <ember/ember.hpp>
#include <ember/eval/classification.hpp>
#include <filesystem>

#include "common/classifier.hpp"
#include "common/example.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;

namespace {

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

int run(ember_examples::ExampleOptions& o) {
    const int threads = ember_examples::use_threads(o);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: images in [0, 1] with their labels --------------------------------------
    const ember::ImageSet train = ember_examples::load_images(o, true);
    ember::ImageSet test_set = ember_examples::load_images(o, false);
    const Tensor<float> train01 = ember::scale_to_unit(train.images);  // the IDX pixels are 0..255
    Tensor<float> test01 = ember::scale_to_unit(test_set.images);
    if (o.quick) {  // a smoke test need not classify all 10 000 test images
        test01 = test01.slice(0, 0, 1000).contiguous();
        test_set.labels.resize(1000);
    }
    ember::BatchIterator<float> batches(train01, train.labels,
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch;

    // ---- model, optimiser and what a checkpoint holds -------------------------------------
    ember::Generator init(o.seed);
    ember_examples::MnistClassifier net(init, o.seed + 1);
    ember::Adam<float> opt(net.parameters(), {.lr = o.lr});
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    ckpt.add("classifier", net).add("opt", opt, net).add("dropout", net.dropout_generator()).add("step", step);
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), o.name.c_str(), "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    std::printf("%s: %s, %lld training and %lld test images; %lld parameters; batch %lld, Adam lr %g, %lld steps "
                "(%lld per epoch), seed %llu, %d threads\n",
                o.name.c_str(), o.dataset.c_str(), static_cast<long long>(train01.dim(0)),
                static_cast<long long>(test01.dim(0)), static_cast<long long>(net.parameter_count()),
                static_cast<long long>(o.batch), o.lr, static_cast<long long>(total), static_cast<long long>(per_epoch),
                static_cast<unsigned long long>(o.seed), threads);
    std::fflush(stdout);  // before the progress line, which goes to stderr

    // ---- training -----------------------------------------------------------------------------
    const std::map<std::string, std::string> about{{"example", o.name}, {"dataset", o.dataset}};
    ember::MetricsLog metrics(out / "metrics.csv", step, {"epoch", "train_loss", "test_loss", "test_error"});
    ember::Progress progress(total, {.label = o.name, .start_step = step, .every_steps = 500});
    const std::int64_t log_every = 50;
    double window = 0;
    int in_window = 0;
    std::optional<TestResult> last;
    batches.seek(step);
    net.train();
    while (step < total) {
        const ember::MiniBatch<float> batch = batches.next_wrapping();
        const ember::Var<float> loss = ember::softmax_cross_entropy(net(ember::Var<float>(batch.x)), batch.labels);
        opt.zero_grad();
        ember::backward(loss);
        opt.step();
        ++step;
        window += loss.item();
        ++in_window;
        progress.update(step, {{"loss", loss.item()}});
        const bool epoch_end = step % per_epoch == 0 || step == total;
        const double epoch = static_cast<double>(step) / static_cast<double>(per_epoch);
        if (epoch_end) {
            last = test(net, test01, test_set.labels);
            net.train();
            metrics.write(step, {{"epoch", epoch},
                                 {"train_loss", window / in_window},
                                 {"test_loss", last->loss},
                                 {"test_error", 1.0 - last->accuracy}});
            std::fflush(stdout);
            std::fprintf(stderr, "\n%s: epoch %.2f: test accuracy %.2f%% (test loss %.4f)\n", o.name.c_str(), epoch,
                         100.0 * last->accuracy, last->loss);
            window = 0, in_window = 0;
            ckpt.save(ckpt_path, about);
            ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"train_loss", "test_loss", "test_error"},
                                     {.title = o.name + ": cross-entropy and test error", .log_y = true});
        } else if (step % log_every == 0) {
            metrics.write(step, {{"epoch", epoch}, {"train_loss", window / in_window}});
            window = 0, in_window = 0;
        }
    }
    progress.finish();
    if (!last) last = test(net, test01, test_set.labels);  // --resume of a finished run

    // ---- the model alone, for quality.hpp and evaluate; the test images it gets wrong ----------
    ember::Checkpoint<float> model_only;
    model_only.add("classifier", net);
    model_only.save(out / "classifier.safetensors", about);  // atomic
    if (!last->wrong.empty()) {
        const Index n = std::min<Index>(static_cast<Index>(last->wrong.size()), 100);
        Tensor<float> wrong = Tensor<float>::empty(ember::Shape{n, 1, 28, 28});
        for (Index i = 0; i < n; ++i) wrong.slice(0, i, i + 1).copy_from(test01.slice(0, last->wrong[i], last->wrong[i] + 1));
        ember::save_image_grid(out / "errors.png", wrong, std::min<Index>(n, 10), 0.0, 1.0);
    }

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %lld steps in %.1f s (%d threads); test accuracy %.2f%% (%zu of %lld wrong), test loss %.4f; "
                "wrote %s/{classifier.safetensors, metrics.csv, loss.png, errors.png, checkpoint.safetensors}\n",
                o.name.c_str(), static_cast<long long>(step), seconds, threads, 100.0 * last->accuracy,
                last->wrong.size(), static_cast<long long>(test01.dim(0)), last->loss, o.out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "classifier_mnist";
    o.epochs = 5, o.batch = 128, o.lr = 1e-3;
    CLI::App app{"classifier_mnist: the small CNN classifier behind the examples' sample-quality numbers"};
    // Written to out/classifier_<dataset>, where the other examples' --classifier looks by
    // default (the dataset is known after parsing; "mnist" until then).
    o.out = "out/classifier_" + o.dataset;
    ember_examples::add_common_options(app, o);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (app.count("--out") == 0) o.out = "out/classifier_" + o.dataset;
    ember_examples::apply_quick(app, o, 40);
    return ember_examples::run_main(o.name, [&] { return run(o); });
}
