// wgan_gp_mnist: Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, Algorithm 1)
// on MNIST, with the small DCGAN-style generator and critic of common/conv_gan.hpp (MATH.md §4),
// width w = 32:
//   G: z (128) -> Linear 2w·7·7 -> BN, ReLU -> Upsample 2, Conv3x3 w -> BN, ReLU
//                                            -> Upsample 2, Conv3x3 1 -> Tanh
//      (--upsample-conv 0: ConvTranspose 4x4/2 instead of each "Upsample 2, Conv3x3", as DCGAN)
//   D: x -> Conv 4x4/2 w -> LReLU -> Conv 4x4/2 2w -> LReLU -> Linear 1   (no BatchNorm in the
//      critic, as in the paper: the penalty is per sample)
//
//   W1(P_r, P_g) = max over 1-Lipschitz D of  E_x D(x) - E_z D(G(z))
//   critic:    min_D  E_z D(G(z)) - E_x D(x) + λ E_x̂ (||∇_x̂ D(x̂)||₂ - 1)²,
//              x̂ = ε x + (1-ε) G(z), ε ~ U[0,1] per sample, λ = 10
//              (a 1-Lipschitz function has gradient norm 1 almost everywhere on the lines
//              between coupled points of P_r and P_g; the penalty asks for that softly)
//   generator: min_G  -E_z D(G(z))
//   n_critic = 5 critic steps (each on a fresh real batch and fresh noise) per generator
//   step; Adam(β = (0.5, 0.9)) for both, as in the paper, with lr 2e-4 falling linearly to 0
//   over the run (the schedule of the paper's CIFAR-10 ResNet code; its MNIST runs keep 1e-4 for 200 000 steps,
//   40 times this default's 5059, which a CPU cannot afford).
//   --ema-decay d > 0 samples from an exponential moving average of G's weights instead of
//   the last G (optim/average.hpp, Yazıcı et al. 2019) and writes the last G's samples of
//   the same z beside them. Off by default: with the lr decaying to 0 the last G is already
//   an average in effect, and d = 0.999 measured no better (docs/results.md).
//
// The critic's loss without the penalty, negated, E_x D(x) - E_z D(G(z)), is its current
// estimate of W1 (up to the Lipschitz constant actually achieved); the paper shows that it
// falls as the samples improve. It is logged as `wasserstein` and drawn in wasserstein.png.
// The losses and the penalty come from the library (divergence/gan_loss.hpp,
// energy/penalty.hpp).
//
//   wgan_gp_mnist [--data DIR] [--dataset mnist|fashion] [--out DIR] [--epochs N | --iters N]
//                 [--batch N] [--lr X] [--lr-decay 0|1] [--n-critic N] [--lambda X] [--latent N] [--width N]
//                 [--upsample-conv 0|1] [--ema-decay X]
//                 [--seed N] [--threads N] [--n-samples N] [--classifier FILE] [--resume] [--quick]
//
// --iters counts generator steps; --epochs counts passes of the critic over the training set
// (n_critic real batches per generator step). Writes to --out: samples.png (10x10 grid from
// fixed noise, refreshed at every checkpoint), samples.npy (float32 [N,1,28,28] in [0,1]),
// samples_last.npy and samples_last.png (the same z through the last G, when the average is on),
// metrics.csv, wasserstein.png, loss.png, and checkpoint.safetensors (every epoch and at the
// end; --resume continues from it, giving the same result bit for bit as an uninterrupted
// run with the same flags).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "common/example.hpp"
#include "common/conv_gan.hpp"
#if __has_include("common/quality.hpp")
#include "common/quality.hpp"
#endif

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;
using ember::Var;

namespace {

struct WganOptions {
    int n_critic = 5;
    double lambda = 10;
    ember_examples::ConvGanOptions nets{.latent = 128, .width = 32, .upsample_conv = true};
    bool lr_decay = true;  // lr falls linearly from --lr to 0 over the run
    double ema_decay = 0;  // > 0: samples come from this moving average of G's weights (0: from the last G)
};

int run(ember_examples::ExampleOptions o, const WganOptions& w) {
    const int threads = ember_examples::use_threads(o);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: training images [N,1,28,28], scaled to [-1, 1] like the generator's Tanh -----
    const ember::ImageSet train = ember_examples::load_images(o, true);
    const Index N = train.images.dim(0);
    const Tensor<float> images = ember::scale_to_symmetric(train.images);
    ember::BatchIterator<float> batches(images, {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch / w.n_critic;

    // ---- model, optimisers, noise and what a checkpoint holds ------------------------------
    ember::Generator init(o.seed);
    ember_examples::ConvGan gan(init, w.nets);
    // The averaged generator: a second G of the same architecture (its own D is not used).
    ember::Generator unused_init(o.seed + 4);
    ember_examples::ConvGan averaged(unused_init, w.nets);
    ember::ExponentialMovingAverage<float> ema(averaged.G, gan.G, {.decay = w.ema_decay});
    const bool use_ema = w.ema_decay > 0;
    ember_examples::ConvGan& sampler = use_ema ? averaged : gan;  // where the samples come from
    const ember::AdamOptions adam{.lr = o.lr, .betas = {0.5, 0.9}};
    ember::Adam<float> opt_G(gan.G.parameters(), adam), opt_D(gan.D.parameters(), adam);
    ember::Generator noise(o.seed + 1);  // z and the interpolation ε of every step
    const Tensor<float> z_fixed = [&] {  // the same 100 z for every picture
        ember::Generator g(o.seed + 2);
        return ember::normal<float>(ember::Shape{100, w.nets.latent}, g);
    }();
    std::int64_t step = 0, real_batches = 0;  // generator steps; real batches the critic has seen
    ember::Checkpoint<float> ckpt;
    ckpt.add("gen", gan.G).add("critic", gan.D).add("opt_gen", opt_G, gan.G).add("opt_critic", opt_D, gan.D);
    ckpt.add("noise", noise).add("step", step).add("real_batches", real_batches);
    if (use_ema) ckpt.add("gen_ema", averaged.G).add("ema_updates", ema.update_count());
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), o.name.c_str(), "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    std::printf("wgan_gp_mnist: %s, %lld images; G %lld and D %lld parameters (latent %lld, width %lld); batch %lld, "
                "Adam lr %g betas (0.5, 0.9), n_critic %d, lambda %g, %lld generator steps (%.2f epochs of the "
                "critic), moving average of G with decay %g for samples (0: none), seed %llu, %d threads\n",
                o.dataset.c_str(), static_cast<long long>(N), static_cast<long long>(gan.G.parameter_count()),
                static_cast<long long>(gan.D.parameter_count()), static_cast<long long>(w.nets.latent),
                static_cast<long long>(w.nets.width), static_cast<long long>(o.batch), o.lr, w.n_critic, w.lambda,
                static_cast<long long>(total),
                static_cast<double>(total * w.n_critic) / static_cast<double>(per_epoch),
                w.ema_decay,
                static_cast<unsigned long long>(o.seed), threads);
    std::fflush(stdout);

    const std::map<std::string, std::string> about{{"example", o.name}, {"dataset", o.dataset}};
    auto save_pictures = [&] {
        ember::save_image_grid(out / "samples.png", sampler.sample01(z_fixed), 10, 0.0, 1.0);
        ember::save_metrics_plot(out / "metrics.csv", out / "wasserstein.png", {"wasserstein"});
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"loss_critic", "gp", "loss_g"});
    };
    auto fake_batch = [&] {  // G(z) on fresh noise, for the critic: no graph needed
        ember::NoGrad no_grad;
        return gan.G(Var<float>(ember::normal<float>(ember::Shape{o.batch, w.nets.latent}, noise))).value();
    };
    auto next_real = [&] {
        ++real_batches;
        return Var<float>(batches.next_wrapping().x);
    };

    // ---- training (Algorithm 1) ----------------------------------------------------------
    ember::MetricsLog metrics(out / "metrics.csv", step, {"epoch", "wasserstein", "gp", "loss_critic", "loss_g"});
    ember::Progress progress(total, {.label = o.name, .start_step = step, .every_steps = 500});
    const std::int64_t log_every = 50;
    double win_w = 0, win_gp = 0, win_c = 0, win_g = 0, last_w = NAN, last_gp = NAN;
    int in_window = 0;
    const auto per_epoch64 = static_cast<std::int64_t>(per_epoch);
    batches.seek(real_batches);
    const Index B = o.batch;
    while (step < total) {
        const std::int64_t epoch_before = real_batches / per_epoch64;
        // n_critic critic steps, each on fresh real images and fresh generator samples.
        double w_est = 0, gp_val = 0, c_val = 0;
        if (w.lr_decay) {
            const double lr = ember_examples::linearly_decayed_lr(o.lr, step, total);
            opt_D.set_lr(lr), opt_G.set_lr(lr);
        }
        for (int i = 0; i < w.n_critic; ++i) {
            const Var<float> x = next_real();
            const Var<float> fake(fake_batch());
            const Var<float> scores = gan.D(ember::concat<float>({x, fake}, 0));  // one pass for both halves
            const Var<float> loss_w = ember::gan::wasserstein_critic_loss(ember::slice(scores, 0, 0, B),
                                                                           ember::slice(scores, 0, B, 2 * B));
            const Var<float> gp = ember::energy::wgan_gp_penalty(gan.D, x, fake, noise, w.lambda);
            const Var<float> loss = loss_w + gp;
            opt_D.zero_grad();
            ember::backward(loss);
            opt_D.step();
            w_est += -loss_w.item(), gp_val += gp.item(), c_val += loss.item();
        }
        // One generator step through the updated critic (its parameters frozen meanwhile).
        gan.D.requires_grad(false);
        const Var<float> loss_g = ember::gan::wasserstein_generator_loss(
            gan.D(gan.G(Var<float>(ember::normal<float>(ember::Shape{B, w.nets.latent}, noise)))));
        opt_G.zero_grad();
        ember::backward(loss_g);
        opt_G.step();
        if (use_ema) ema.update();
        gan.D.requires_grad(true);
        ++step;

        const double k = w.n_critic;
        win_w += w_est / k, win_gp += gp_val / k, win_c += c_val / k, win_g += loss_g.item(), ++in_window;
        progress.update(step, {{"W", w_est / k}, {"gp", gp_val / k}});
        if (step % log_every == 0 || step == total) {
            last_w = win_w / in_window, last_gp = win_gp / in_window;
            metrics.write(step, {{"epoch", static_cast<double>(real_batches) / static_cast<double>(per_epoch)},
                                 {"wasserstein", last_w},
                                 {"gp", last_gp},
                                 {"loss_critic", win_c / in_window},
                                 {"loss_g", win_g / in_window}});
            win_w = win_gp = win_c = win_g = 0, in_window = 0;
        }
        if (real_batches / per_epoch64 != epoch_before || step == total) {
            ckpt.save(ckpt_path, about);
            save_pictures();
        }
    }
    progress.finish();

    // ---- samples for evaluation ---------------------------------------------------------------
    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> z_eval = ember::normal<float>(ember::Shape{o.n_samples, w.nets.latent}, sample_noise);
    const Tensor<float> samples = sampler.sample01(z_eval);
    ember_examples::write_samples(out, samples);
    if (use_ema) ember_examples::write_samples(out, gan.sample01(z_eval), "samples_last.png", "samples_last.npy");
    save_pictures();

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wgan_gp_mnist: %lld generator steps in %.1f s; last logged window: Wasserstein estimate %.3f, "
                "gradient penalty %.3f; wrote %s/{samples.png, samples.npy, metrics.csv, wasserstein.png, loss.png, "
                "checkpoint.safetensors}\n",
                static_cast<long long>(step), seconds, last_w, last_gp, o.out.c_str());
    std::fflush(stdout);
#if __has_include("common/quality.hpp")
    ember_examples::report_sample_quality(o, samples);
#endif
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    // Batch 64 as Gulrajani et al.; Adam 2e-4 decaying linearly to 0 as in their CIFAR-10 code (their
    // MNIST code keeps 1e-4 for 200 000 steps). 60 critic epochs = 11 244 generator steps, about
    // 19 minutes on 2 cores (docs/results.md).
    o.name = "wgan_gp_mnist", o.epochs = 60, o.batch = 64, o.lr = 2e-4;
    WganOptions w;
    CLI::App app{"wgan_gp_mnist: Wasserstein GAN with gradient penalty on MNIST (Gulrajani et al. 2017)"};
    ember_examples::add_common_options(app, o);
    app.add_option("--n-critic", w.n_critic, "critic steps per generator step")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--lambda", w.lambda, "weight of the gradient penalty")->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--latent", w.nets.latent, "dimension of z")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--width", w.nets.width, "channels of the first convolution of D and the last of G (DCGAN width)")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--upsample-conv", w.nets.upsample_conv, "G upsamples by nearest 2x then a 3x3 conv (1) or by ConvTranspose 4x4/2 (0)")->capture_default_str();
    app.add_option("--ema-decay", w.ema_decay, "decay of the moving average of G's weights that gives the samples (0: samples from the last G)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
    app.add_option("--lr-decay", w.lr_decay, "decay the lr linearly to 0 over the run (1) or keep it constant (0)")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    ember_examples::apply_quick(app, o, 50);
    return ember_examples::run_main(o.name, [&] { return run(o, w); });
}
