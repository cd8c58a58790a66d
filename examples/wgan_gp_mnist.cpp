// wgan_gp_mnist: the Wasserstein GAN with gradient penalty of Gulrajani, Ahmed, Arjovsky,
// Dumoulin & Courville (2017, Algorithm 1) on MNIST (docs/math.md §1.5, §4.4):
//
//   W1(P_r, P_g) = max over 1-Lipschitz D of  E_x D(x) - E_z D(G(z))
//   L_D = E_z D(G(z)) - E_x D(x) + λ E_x̂ (||∇_x̂ D(x̂)||₂ - 1)²     gan::wasserstein_critic_loss,
//         x̂ = ε x + (1-ε) G(z),  ε ~ U[0,1] per sample             energy::wgan_gp_penalty
//   L_G = -E_z D(G(z))                                             gan::wasserstein_generator_loss
//
// A 1-Lipschitz function has gradient norm 1 almost everywhere on the lines between coupled
// points of P_r and P_g; the penalty asks for that softly. n_critic = 5 critic steps, each on
// fresh real images and noise, per generator step; λ = 10. E_x D(x) - E_z D(G(z)) estimates W1
// (up to the Lipschitz constant achieved) and falls as the samples improve: it is logged as
// `wasserstein` and drawn in wasserstein.png.
//
// Networks (common/conv_gan.hpp): DCGAN-style at width 32, z of 128, the critic without
// normalisation (the penalty is per sample). Adam (0.5, 0.9) as in the paper, lr 2e-4 falling
// linearly to 0 (their CIFAR-10 code's schedule; their MNIST runs keep 1e-4 for 200 000
// generator steps, which a CPU cannot afford). --ema-decay d > 0 samples from an exponential
// moving average of G's weights (Yazıcı et al. 2019; ember/optim/average.hpp) instead of the
// last G; off by default: with the lr decaying to 0 the last G is already an average in effect,
// and d = 0.999 measured no better (docs/results.md).
//
// --iters counts generator steps, --epochs the critic's passes over the data. Writes to --out:
// samples.png (10x10 grid from fixed noise, every epoch), samples.npy (float32 [N,1,28,28] in
// [0,1]), samples_last.png / .npy (the same z through the last G, when averaging), metrics.csv,
// wasserstein.png, loss.png, checkpoint.safetensors (every epoch; --resume continues from it
// bit for bit) and summary.json. `--help` lists the flags.
#include "common/conv_gan_steps.hpp"
#include "common/run.hpp"

namespace {

using Tensor = ember::Tensor<float>;

struct Options : ember_examples::ExampleOptions {
    ember_examples::WganGpStepOptions wgan;  // n_critic = 5, λ = 10
    ember_examples::ConvGanOptions nets{.latent = 128, .width = 32, .upsample_conv = true};
    bool lr_decay = true;  // lr falls linearly from --lr to 0 over the run
    double ema_decay = 0;  // > 0: samples come from this moving average of G's weights (0: from the last G)
};

int train(Options& o) {
    const ember::ImageSet data = ember_examples::load_images(o, true);
    ember::BatchIterator<float> batches(ember::scale_to_symmetric(data.images),  // [-1, 1], as G's Tanh
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    ember_examples::TrainingRun run(o, {.batches_per_epoch = batches.batches_per_epoch(), .batches_per_step = o.wgan.n_critic});

    ember::Generator init(o.seed), noise(o.seed + 1);  // noise: the z and ε of every step
    ember_examples::ConvGan gan(init, o.nets);
    ember::Generator unused_init(o.seed + 4);  // the averaged G: a second G (its D unused)
    ember_examples::ConvGan averaged(unused_init, o.nets);
    ember::ExponentialMovingAverage<float> ema(averaged.G, gan.G, {.decay = o.ema_decay});
    const bool use_ema = o.ema_decay > 0;
    ember_examples::ConvGan& sampler = use_ema ? averaged : gan;  // where the samples come from
    const ember::AdamOptions adam{.lr = o.lr, .betas = {0.5, 0.9}};
    ember::Adam<float> opt_G(gan.G.parameters(), adam), opt_D(gan.D.parameters(), adam);
    const Tensor z_fixed = ember_examples::fixed_noise(100, o.nets.latent, o.seed + 2);  // every picture's z
    std::int64_t real_batches = 0;  // real batches the critic has read
    run.checkpoint.add("gen", gan.G).add("critic", gan.D).add("opt_gen", opt_G, gan.G).add("opt_critic", opt_D, gan.D);
    run.checkpoint.add("noise", noise).add("step", run.step).add("real_batches", real_batches);
    if (use_ema) run.checkpoint.add("gen_ema", averaged.G).add("ema_updates", ema.update_count());
    ember_examples::MetricsWindow<> window(run, {"wasserstein", "gp", "loss_critic", "loss_g"});
    run.start({{"images", data.images.dim(0)}, {"G parameters", gan.G.parameter_count()},
               {"D parameters", gan.D.parameter_count()}, {"latent", o.nets.latent}, {"width", o.nets.width},
               {"n_critic", o.wgan.n_critic}, {"lambda", o.wgan.lambda}, {"G average decay", o.ema_decay}});

    auto save_pictures = [&] {
        ember::save_image_grid(run.out / "samples.png", sampler.sample01(z_fixed), 10, 0.0, 1.0);
        ember::save_metrics_plot(run.out / "metrics.csv", run.out / "wasserstein.png", {"wasserstein"});
        ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", {"loss_critic", "gp", "loss_g"});
    };
    batches.seek(real_batches);
    while (run.running()) {
        if (o.lr_decay) {
            const double lr = ember_examples::linearly_decayed_lr(o.lr, run.step, run.total);
            opt_D.set_lr(lr), opt_G.set_lr(lr);
        }
        auto next_real = [&] { ++real_batches; return batches.next_wrapping().x; };
        const ember_examples::WganLosses l = ember_examples::wgan_gp_step(gan, opt_G, opt_D, o.wgan, next_real, noise);
        if (use_ema) ema.update();
        window.add(run.finish_step(), {l.wasserstein, l.gp, l.critic, l.g});
        if (run.epoch_done()) run.save_checkpoint(), save_pictures();
    }

    const Tensor z = ember_examples::fixed_noise(o.n_samples, o.nets.latent, o.seed + 3);
    const Tensor samples = sampler.sample01(z);
    ember_examples::write_samples(run.out, samples);
    if (use_ema) ember_examples::write_samples(run.out, gan.sample01(z), "samples_last.png", "samples_last.npy");
    save_pictures();
    run.quality(samples);
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "wgan_gp_mnist", o.epochs = 60, o.batch = 64, o.lr = 2e-4;  // 11 244 G steps (wall time: docs/results.md)
    ember_examples::Flags flags("wgan_gp_mnist: Wasserstein GAN with gradient penalty on MNIST (Gulrajani et al. 2017)", o);
    using ember_examples::Check;
    flags.add("--n-critic", o.wgan.n_critic, "critic steps per generator step", Check::positive)
        .add("--lambda", o.wgan.lambda, "weight of the gradient penalty", Check::non_negative)
        .add("--latent", o.nets.latent, "dimension of z", Check::positive)
        .add("--width", o.nets.width, "channels of D's first and G's last convolution", Check::positive)
        .add("--upsample-conv", o.nets.upsample_conv, "G upsamples by nearest 2x + Conv 3x3 (1) or ConvTranspose (0)")
        .add("--ema-decay", o.ema_decay, "decay of the moving average of G's weights that gives the samples (0: none)",
             Check::unit_interval)
        .add("--lr-decay", o.lr_decay, "decay the lr linearly to 0 over the run (1) or keep it constant (0)");
    return flags.run(argc, argv, {.iters = 50}, [&] { return train(o); });
}
