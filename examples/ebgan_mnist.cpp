// ebgan_mnist: the energy-based GAN of Zhao, Mathieu & LeCun (2017) on MNIST
// (docs/math.md §3). The discriminator is an auto-encoder; its reconstruction error is the
// energy, low on data and high elsewhere:
//
//   D(x)    = (1/784) ||Dec(Enc(x)) - x||²                     energy::autoencoder_energy
//   L_D     = E_x[D(x)] + E_z[m - D(G(z))]_+                    energy::ebgan_discriminator_loss
//   L_G     = E_z[D(G(z))] + λ_PT f_PT(S),  S_i = Enc(G(z_i))   energy::ebgan_generator_loss
//   f_PT(S) = 1/(B(B-1)) Σ_i Σ_{j≠i} (S_iᵀS_j / (|S_i| |S_j|))²  energy::pulling_away
//
// The margin m stops the discriminator from spending its capacity on pushing generated
// samples' energy ever higher: a sample whose energy reached m no longer counts. The
// pulling-away term keeps the generator's samples apart in code space, against mode collapse.
//
// Networks (common/ebgan_nets.hpp): PyTorch-GAN's EBGAN, the generator's convolutions at half
// width. Batch 64, Adam 2e-4 (0.5, 0.999), margin 1, λ_PT 0.1 (the paper's), BatchNorm eps
// 1e-5 (the reference code's BatchNorm2d(C, 0.8) sets eps 0.8, and the generator then
// collapses: --bn-eps 0.8 shows it). bench/bench_models.cpp times train_step (BM_EbganStep).
//
// Writes to --out: samples.png (10x10 grid from fixed noise, every epoch), samples.npy
// (float32 [N,1,28,28] in [0,1]), metrics.csv, loss.png, energy.png, checkpoint.safetensors
// (every epoch; --resume continues from it bit for bit) and summary.json. `--help` lists the flags.
#include "common/ebgan_nets.hpp"

namespace ember_examples {

struct EbganLosses {
    float d, g;
    float d_real, d_fake;  // mean energies of the real and the generated batch (before the D step)
    float pt;              // f_PT of the generated batch's codes
};

// One D step, then one G step through the updated D; real [B,1,28,28] in [-1, 1], z [B, latent].
inline EbganLosses train_step(Ebgan& gan, const ember::Tensor<float>& real, const ember::Tensor<float>& z) {
    using Var = ember::Var<float>;
    const EbganOptions& o = gan.options;
    const Var fake = gan.G(Var(z));

    // D: real energies down, generated ones up to the margin (real and fake in separate
    // passes: D's BatchNorm would otherwise mix their statistics).
    const Var d_real = gan.energy(Var(real)).energy, d_fake = gan.energy(fake.detach()).energy;
    const Var loss_d = ember::energy::ebgan_discriminator_loss(d_real, d_fake, o.margin);
    gan.opt_D->zero_grad();
    ember::backward(loss_d);
    gan.opt_D->step();

    // G: generated energies down, codes apart; D's parameters frozen meanwhile.
    gan.D.requires_grad(false);
    const Ebgan::Energy e = gan.energy(fake);
    const Var loss_g = ember::energy::ebgan_generator_loss(e.energy, e.code, o.lambda_pt);
    gan.opt_G->zero_grad();
    ember::backward(loss_g);
    gan.opt_G->step();
    gan.D.requires_grad(true);

    ember::NoGrad no_grad;
    return {loss_d.item(), loss_g.item(), ember::mean(d_real.value()).item(), ember::mean(d_fake.value()).item(),
            ember::energy::pulling_away(Var(e.code.value())).item()};
}

}  // namespace ember_examples

#ifndef EMBER_EXAMPLE_STEP_ONLY  // defined by a benchmark that includes this file for train_step
#include "common/run.hpp"

namespace {

using ember::Tensor;

struct Options : ember_examples::ExampleOptions {
    ember_examples::EbganOptions gan;
};

int train(Options& o) {
    EMBER_CHECK(o.batch >= 2, "--batch", "must be at least 2 (the pulling-away term needs pairs), got ", o.batch);
    const ember::ImageSet data = ember_examples::load_images(o, true);
    ember::BatchIterator<float> batches(ember::scale_to_symmetric(data.images),  // [-1, 1], as G's Tanh
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    ember_examples::TrainingRun run(o, {.batches_per_epoch = batches.batches_per_epoch(), .log_every = 20,
                                        .progress_every = 100});

    ember::Generator init(o.seed), noise(o.seed + 1);  // noise: the z of every step
    o.gan.lr = o.lr;
    ember_examples::Ebgan gan(init, o.gan);
    const Tensor<float> z_fixed = ember_examples::fixed_noise(100, o.gan.latent, o.seed + 2);  // every picture's z
    run.checkpoint.add("gen", gan.G).add("disc", gan.D).add("opt_gen", *gan.opt_G, gan.G).add("opt_disc", *gan.opt_D, gan.D);
    run.checkpoint.add("noise", noise).add("step", run.step);
    ember_examples::MetricsWindow<float> window(run, {"loss_d", "loss_g", "d_real", "d_fake", "pt"});
    run.start({{"images", data.images.dim(0)}, {"G parameters", gan.G.parameter_count()},
               {"D parameters", gan.D.parameter_count()}, {"margin", o.gan.margin}, {"pt weight", o.gan.lambda_pt},
               {"BatchNorm eps", o.gan.bn_eps}});

    batches.seek(run.step);
    while (run.running()) {
        const Tensor<float> real = batches.next_wrapping().x;
        const ember_examples::EbganLosses l = train_step(gan, real, ember::normal<float>(ember::Shape{o.batch, o.gan.latent}, noise));
        window.add(run.finish_step(), {l.d, l.g, l.d_real, l.d_fake, l.pt});
        if (run.epoch_done()) {
            run.save_checkpoint();
            ember::save_image_grid(run.out / "samples.png", ember::symmetric_to_unit(gan.sample(z_fixed)), 10, 0.0, 1.0);
            ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", {"loss_d", "loss_g"});
            ember::save_metrics_plot(run.out / "metrics.csv", run.out / "energy.png", {"d_real", "d_fake", "pt"});
        }
    }

    const Tensor<float> z = ember_examples::fixed_noise(o.n_samples, o.gan.latent, o.seed + 3);
    const Tensor<float> samples = ember::symmetric_to_unit(gan.sample(z));
    ember_examples::write_samples(run.out, samples);
    run.quality(samples);
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "ebgan_mnist", o.epochs = 3, o.batch = 64, o.lr = 2e-4;  // 2811 steps (docs/results.md)
    ember_examples::Flags flags("ebgan_mnist: an energy-based GAN with an auto-encoder energy on MNIST (Zhao et al. 2017)", o);
    using ember_examples::Check;
    flags.add("--margin", o.gan.margin, "margin m of the discriminator's hinge [m - D(G(z))]_+", Check::positive);
    flags.add("--pt-weight", o.gan.lambda_pt, "weight λ_PT of the pulling-away term in the generator's loss (0: off)",
              Check::non_negative);
    flags.add("--bn-eps", o.gan.bn_eps, "eps of the BatchNorms (the reference code's 0.8 makes the generator collapse)",
              Check::positive);
    return flags.run(argc, argv, {.iters = 10}, [&] { return train(o); });
}
#endif
