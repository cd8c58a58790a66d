// ebgan_mnist: the energy-based GAN (Zhao, Mathieu & LeCun, 2017; seed 002; MATH.md §3) on
// MNIST. The discriminator is an auto-encoder and its reconstruction error is the energy:
//
//   D(x)  = (1/784) ||Dec(Enc(x)) - x||²                    low on data, high elsewhere
//   L_D   = E_x[D(x)] + E_z[m - D(G(z))]_+                  per-sample margin hinge, margin m
//   L_G   = E_z[D(G(z))] + λ_PT f_PT(S),  S_i = Enc(G(z_i))
//   f_PT(S) = 1/(B(B-1)) Σ_i Σ_{j≠i} (S_iᵀS_j / (|S_i| |S_j|))²   the paper's pulling-away term
//
// The margin keeps the discriminator from spending its capacity on pushing generated
// samples' energy to infinity: once a sample's energy reaches m it no longer contributes.
// The pulling-away term keeps the generator's samples apart in the code space (mean squared
// cosine similarity of distinct pairs), against mode collapse. All three losses come from
// ember/energy/ebgan.hpp.
//
// Architecture: seed 002's conv auto-encoder and conv generator (PyTorch-GAN's EBGAN), the
// generator's convolutions at half the seed's width; batch 64, Adam 2e-4 (0.5, 0.999),
// margin 1 (the seed's max(1, batch/64)), λ_PT 0.1 (the paper), BatchNorm eps 1e-5 (the
// seed's 0.8 makes the generator collapse; --bn-eps 0.8 shows it). The networks and the step
// are in common/ebgan_nets.hpp (bench/bench_models.cpp times the same step, BM_EbganStep).
//
//   ebgan_mnist [--data DIR] [--dataset mnist|fashion] [--out DIR] [--epochs N | --iters N]
//               [--batch N] [--lr X] [--margin M] [--pt-weight L] [--bn-eps E] [--seed N] [--threads N]
//               [--n-samples N] [--classifier FILE] [--resume] [--quick]
//
// Writes to --out: samples.png (10x10 grid from fixed noise, refreshed every epoch),
// samples.npy (float32 [N,1,28,28] in [0,1]), metrics.csv, loss.png, energy.png (the
// energies of real and generated batches against the margin), and checkpoint.safetensors
// (every epoch and at the end; --resume continues from it, giving the same result bit for
// bit as an uninterrupted run with the same flags). With the classifier of
// classifier_mnist, prints the samples' class histogram, KL to uniform, confidence and
// Fréchet distance at the end.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "common/ebgan_nets.hpp"
#include "common/example.hpp"
#include "common/quality.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;

namespace {

struct Options : ember_examples::ExampleOptions {
    double margin = 1.0, pt_weight = 0.1, bn_eps = 1e-5;
};

// Pixels in [-1, 1] as the generator's Tanh produces them -> [0, 1] for pictures and files.

int run(Options& o) {
    const int threads = ember_examples::use_threads(o);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: training images [N,1,28,28] scaled to [-1, 1], the generator's range --------
    const ember::ImageSet train = ember_examples::load_images(o, true);
    const Index N = train.images.dim(0);
    const Tensor<float> images = ember::scale_to_symmetric(train.images);
    ember::BatchIterator<float> batches(images, {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch;
    EMBER_CHECK(o.batch >= 2, o.name.c_str(), "--batch must be at least 2 (the pulling-away term needs pairs), got ", o.batch);

    // ---- model, noise and what a checkpoint holds -------------------------------------------
    ember::Generator init(o.seed);
    const ember_examples::EbganOptions eo{.lr = o.lr, .margin = o.margin, .lambda_pt = o.pt_weight, .bn_eps = o.bn_eps};
    ember_examples::Ebgan gan(init, eo);
    ember::Generator noise(o.seed + 1);  // the z of every step
    const Tensor<float> z_fixed = [&] {  // the same 100 z for every picture
        ember::Generator g(o.seed + 2);
        return ember::normal<float>(ember::Shape{100, eo.latent}, g);
    }();
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    ckpt.add("gen", gan.G).add("disc", gan.D).add("opt_gen", *gan.opt_G, gan.G).add("opt_disc", *gan.opt_D, gan.D);
    ckpt.add("noise", noise).add("step", step);
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), o.name.c_str(), "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    std::printf("%s: %s, %lld images; G %lld and D %lld parameters; batch %lld, lr %g, margin %g, pt weight %g, "
                "BatchNorm eps %g, %lld steps (%lld per epoch), seed %llu, %d threads\n",
                o.name.c_str(), o.dataset.c_str(), static_cast<long long>(N), static_cast<long long>(gan.G.parameter_count()),
                static_cast<long long>(gan.D.parameter_count()), static_cast<long long>(o.batch), o.lr, o.margin, o.pt_weight,
                o.bn_eps, static_cast<long long>(total), static_cast<long long>(per_epoch), static_cast<unsigned long long>(o.seed),
                threads);
    std::fflush(stdout);  // before the progress line, which goes to stderr

    const std::map<std::string, std::string> about{{"example", o.name}, {"dataset", o.dataset}};
    auto save_pictures = [&] {
        ember::save_image_grid(out / "samples.png", ember::symmetric_to_unit(gan.sample(z_fixed)), 10, 0.0, 1.0);
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"loss_d", "loss_g"});
        ember::save_metrics_plot(out / "metrics.csv", out / "energy.png", {"d_real", "d_fake", "pt"});
    };

    // ---- training -----------------------------------------------------------------------------
    ember::MetricsLog metrics(out / "metrics.csv", step);
    ember::Progress progress(total, {.label = o.name, .start_step = step, .every_steps = 100});
    const std::int64_t log_every = 20;
    ember_examples::EbganLosses window, logged;  // sums over the current window; the last window's means
    int in_window = 0;
    batches.seek(step);
    while (step < total) {
        const ember::MiniBatch<float> batch = batches.next_wrapping();
        const Tensor<float> z = ember::normal<float>(ember::Shape{o.batch, eo.latent}, noise);
        const ember_examples::EbganLosses l = gan.step(batch.x, z);
        ++step;
        window.d += l.d, window.g += l.g, window.d_real += l.d_real, window.d_fake += l.d_fake, window.pt += l.pt;
        ++in_window;
        progress.update(step, {{"loss_d", l.d}, {"loss_g", l.g}, {"D(x)", l.d_real}, {"D(G(z))", l.d_fake}});
        if (step % log_every == 0 || step == total) {
            const float k = static_cast<float>(in_window);
            logged = {window.d / k, window.g / k, window.d_real / k, window.d_fake / k, window.pt / k};
            metrics.write(step, {{"epoch", static_cast<double>(step) / static_cast<double>(per_epoch)},
                                 {"loss_d", logged.d},
                                 {"loss_g", logged.g},
                                 {"d_real", logged.d_real},
                                 {"d_fake", logged.d_fake},
                                 {"pt", logged.pt}});
            window = {};
            in_window = 0;
        }
        if (step % per_epoch == 0 || step == total) {
            ckpt.save(ckpt_path, about);
            save_pictures();
        }
    }
    progress.finish();

    // ---- samples for evaluation ------------------------------------------------------------------
    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> z = ember::normal<float>(ember::Shape{o.n_samples, eo.latent}, sample_noise);
    const Tensor<float> samples = ember::symmetric_to_unit(gan.sample(z));
    ember_examples::write_samples(out, samples);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %lld steps in %.1f s with %d threads; last logged window: loss_d %.4f, loss_g %.4f, D(x) %.4f, "
                "D(G(z)) %.4f, f_PT %.4f; wrote %s/{samples.png, samples.npy, metrics.csv, loss.png, energy.png, "
                "checkpoint.safetensors}\n",
                o.name.c_str(), static_cast<long long>(step), seconds, threads, logged.d, logged.g, logged.d_real,
                logged.d_fake, logged.pt, o.out.c_str());
    std::fflush(stdout);
    ember_examples::report_sample_quality(o, samples);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "ebgan_mnist";
    // 3 epochs, 2811 steps: about 17 min of CPU time on one thread (0.35 s per step). One
    // epoch already meets the bar (KL 0.033, Frechet 124); three give a margin
    // (KL 0.014, Frechet 75.7; docs/results.md).
    o.epochs = 3;
    o.batch = 64;
    o.lr = 2e-4;
    CLI::App app{"ebgan_mnist: an energy-based GAN with an auto-encoder energy on MNIST (Zhao et al. 2017)"};
    ember_examples::add_common_options(app, o);
    app.add_option("--margin", o.margin, "margin m of the discriminator's hinge [m - D(G(z))]_+")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--pt-weight", o.pt_weight, "weight λ_PT of the pulling-away term in the generator's loss (0: off)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--bn-eps", o.bn_eps,
                   "eps of the BatchNorms (the seed's code has 0.8, from BatchNorm2d(C, 0.8), which PyTorch reads as eps; "
                   "with it the generator collapses)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    ember_examples::apply_quick(app, o, 10);  // --quick: 10 steps, 100 samples
    return ember_examples::run_main(o.name, [&] { return run(o); });
}
