// gan_mlp_mnist: the original GAN (Goodfellow et al., 2014) with multilayer perceptrons, on
// MNIST, with the non-saturating generator loss the paper recommends in practice.
//
//   min_D  E_x[-log D(x)] + E_z[-log(1 - D(G(z)))]      D(x) = σ(logit), binary cross-entropy
//   min_G  E_z[-log D(G(z))]                             non-saturating: strong gradients early on
//
// The networks and the step are in common/mlp_gan.hpp (bench/bench_models.cpp times the
// same step). This file is the training run around them: data, noise, checkpoints, pictures.
//
//   gan_mlp_mnist [--data DIR] [--dataset mnist|fashion] [--out DIR] [--epochs N | --iters N]
//                 [--batch N] [--lr X] [--seed N] [--threads N] [--n-samples N] [--resume]
//                 [--quick]
//
// Writes to --out: samples.png (10x10 grid from fixed noise, refreshed every epoch),
// samples.npy (float32 [N,1,28,28] in [0,1]), metrics.csv, loss.png, and
// checkpoint.safetensors (every epoch and at the end; --resume continues from it, giving
// the same result bit for bit as an uninterrupted run with the same flags).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <ember/ember.hpp>
#include <filesystem>
#include <iostream>
#include <thread>

#include "common/mlp_gan.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;

namespace {

struct Options {
    std::string data, dataset = "mnist", out = "out/gan_mlp_mnist";
    int epochs = 30;
    std::int64_t iters = 0;  // 0: epochs · batches per epoch
    Index batch = 64;
    double lr = 2e-4;
    std::uint64_t seed = 0;
    int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    Index n_samples = 1000;
    bool resume = false, quick = false;
};

// Pixels in [-1, 1] as the generator's Tanh produces them -> [0, 1] for pictures and files.
Tensor<float> to_unit(const Tensor<float>& x) { return Tensor<float>(ember::clamp(x * 0.5f + 0.5f, 0.0, 1.0)); }

int run(const Options& o) {
    ember::set_num_threads(o.threads);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: training images, flattened, scaled to [-1, 1] ---------------------------
    const auto which = o.dataset == "fashion" ? ember::Dataset::fashion_mnist : ember::Dataset::mnist;
    const ember::ImageSet train = ember::load_image_set(ember::find_dataset(which, o.data), true);
    const Index N = train.images.dim(0);
    const Tensor<float> images = ember::scale_to_symmetric(train.images).reshape(ember::Shape{N, 784});
    ember::BatchIterator<float> batches(images, {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch;

    // ---- model, noise and what a checkpoint holds ---------------------------------------
    ember::Generator init(o.seed);
    ember_examples::MlpGan gan(init, {.lr = o.lr});
    ember::Generator noise(o.seed + 1);  // the z of every step
    const Tensor<float> z_fixed = [&] {  // the same 100 z for every picture
        ember::Generator g(o.seed + 2);
        return ember::normal<float>(ember::Shape{100, 64}, g);
    }();
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    ckpt.add("gen", gan.G).add("disc", gan.D).add("opt_gen", *gan.opt_G, gan.G).add("opt_disc", *gan.opt_D, gan.D);
    ckpt.add("noise", noise).add("step", step);
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), "gan_mlp_mnist", "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
        std::fflush(stdout);
    }
    std::printf("gan_mlp_mnist: %s, %lld images; G %lld and D %lld parameters; batch %lld, lr %g, %lld steps "
                "(%lld per epoch), seed %llu, %d threads\n",
                o.dataset.c_str(), static_cast<long long>(N), static_cast<long long>(gan.G.parameter_count()),
                static_cast<long long>(gan.D.parameter_count()), static_cast<long long>(o.batch), o.lr,
                static_cast<long long>(total), static_cast<long long>(per_epoch), static_cast<unsigned long long>(o.seed),
                o.threads);
    std::fflush(stdout);  // before the progress line, which goes to stderr

    const std::map<std::string, std::string> about{{"example", "gan_mlp_mnist"}, {"dataset", o.dataset}};
    auto save_pictures = [&] {
        ember::save_image_grid(out / "samples.png", to_unit(gan.sample(z_fixed)).reshape(ember::Shape{100, 1, 28, 28}),
                               10, 0.0, 1.0);
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"loss_d", "loss_g"});
    };

    // ---- training -----------------------------------------------------------------------
    ember::MetricsLog metrics(out / "metrics.csv", step);
    ember::Progress progress(total, {.label = "gan_mlp_mnist", .start_step = step, .every_steps = 1000});
    const std::int64_t log_every = 50;
    ember_examples::GanLosses window, logged;  // sums over the current window; the last window's means
    int in_window = 0;
    batches.start_epoch(static_cast<std::uint64_t>(step / per_epoch), step % per_epoch);
    while (step < total) {
        auto batch = batches.next();
        if (!batch) {
            batches.start_epoch(batches.epoch() + 1);
            batch = batches.next();
        }
        const Tensor<float> z = ember::normal<float>(ember::Shape{o.batch, 64}, noise);
        const ember_examples::GanLosses l = gan.step(batch->x, z);
        ++step;
        window.d += l.d, window.g += l.g, window.d_real += l.d_real, window.d_fake += l.d_fake;
        ++in_window;
        progress.update(step, {{"loss_d", l.d}, {"loss_g", l.g}});
        if (step % log_every == 0 || step == total) {
            const float k = static_cast<float>(in_window);
            logged = {window.d / k, window.g / k, window.d_real / k, window.d_fake / k};
            metrics.write(step, {{"epoch", static_cast<double>(step) / static_cast<double>(per_epoch)},
                                 {"loss_d", logged.d},
                                 {"loss_g", logged.g},
                                 {"d_real", logged.d_real},
                                 {"d_fake", logged.d_fake}});
            window = {};
            in_window = 0;
        }
        if (step % per_epoch == 0 || step == total) {
            ckpt.save(ckpt_path, about);
            save_pictures();
        }
    }
    progress.finish();

    // ---- samples for evaluation ------------------------------------------------------------
    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> z = ember::normal<float>(ember::Shape{o.n_samples, 64}, sample_noise);
    ember::save_npy(out / "samples.npy", to_unit(gan.sample(z)).reshape(ember::Shape{o.n_samples, 1, 28, 28}));

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("gan_mlp_mnist: %lld steps in %.1f s; last logged window: loss_d %.3f, loss_g %.3f, D(x) %.3f, "
                "D(G(z)) %.3f; wrote %s/{samples.png, samples.npy, metrics.csv, loss.png, checkpoint.safetensors}\n",
                static_cast<long long>(step), seconds, logged.d, logged.g, logged.d_real, logged.d_fake, o.out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"gan_mlp_mnist: a non-saturating MLP GAN on MNIST (Goodfellow et al. 2014)"};
    app.add_option("--data", o.data, "directory with the IDX files (default: $EMBER_DATA, then the standard places)");
    app.add_option("--dataset", o.dataset, "mnist or fashion")->check(CLI::IsMember({"mnist", "fashion"}))->capture_default_str();
    app.add_option("--out", o.out, "output directory")->capture_default_str();
    app.add_option("--epochs", o.epochs, "passes over the training set")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--iters", o.iters, "training steps (overrides --epochs)")->check(CLI::PositiveNumber);
    app.add_option("--batch", o.batch, "batch size")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--lr", o.lr, "Adam learning rate (betas 0.5, 0.999)")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--seed", o.seed, "random seed (initialisation, data order, noise)")->capture_default_str();
    app.add_option("--threads", o.threads, "threads for ember's kernels and GEMM")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--n-samples", o.n_samples, "images written to samples.npy")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_flag("--resume", o.resume, "continue from checkpoint.safetensors in --out");
    app.add_flag("--quick", o.quick, "300 steps and 100 samples, for smoke tests (explicit --iters/--n-samples win)");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (o.quick) {
        if (app.count("--iters") == 0) o.iters = 300;
        if (app.count("--n-samples") == 0) o.n_samples = 100;
    }
    try {
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gan_mlp_mnist: %s\n", e.what());
        return 1;
    }
}
