// meg_mnist: the maximum-entropy generator of Kumar, Ozair, Goyal, Courville & Bengio (2019)
// on MNIST (docs/math.md §1.3-1.4, §2.4, §2.8, §7.5): an energy model q(x) = e^{-U(x)}/Z and a
// generator G that learns to sample from it, its samples being U's negatives:
//
//   L_U   = E_x[U(x)] - E_z[U(G(z))] + λ E_x||∇_x U(x)||²      energy::contrastive_loss, r1_penalty
//   L_G   = E_z[U(G(z))] - β Î_JSD(G(z); z)                     info::meg_generator_loss
//   Î_JSD = E_i[-sp(-T(G(z_i), z_i))] - E_i[sp(T(G(z_i), z_π(i)))],  π a derangement
//                                                               info::jsd, info::shuffled_pairs
//
// G minimises KL(q_G || q) = E_z[U(G(z))] - H(q_G) + log Z; for a deterministic G the entropy
// is I(G(z); z) up to a constant, bounded by the statistics network T (Deep InfoMax). As in
// the paper's code, G and T step on the same loss (with Adam, β does not matter to T). At the
// end, MALA on U_z(z) = U(G(z)) + ½||z||², the energy pulled back through G, refines the
// samples from the very z of samples.npy (common/latent_mala.hpp).
//
// Networks (common/conv_gan.hpp): G and U DCGAN-style at width 32, z of 64; T an MLP on
// [x, z]. Adam (0.5, 0.9), lr 2e-4 falling linearly to 0 (the paper's code keeps 1e-4); λ = 10, β = 1.
//
// Writes to --out: samples.png / samples.npy (G(z), float32 [N,1,28,28] in [0,1]),
// samples_mcmc.png / samples_mcmc.npy (after latent MALA from the same z), metrics.csv,
// loss.png, checkpoint.safetensors (every epoch; --resume continues from it bit for bit) and
// summary.json. `--help` lists the flags.
#include "common/conv_gan_steps.hpp"
#include "common/run.hpp"

namespace {

using ember::Tensor;

struct Options : ember_examples::ExampleOptions {
    ember_examples::MegStepOptions meg;  // β = 1, λ = 10, one U step per G step
    ember_examples::ConvGanOptions nets{.latent = 64, .width = 32, .upsample_conv = true};
    bool lr_decay = true;  // lr falls linearly from --lr to 0 over the run
    std::int64_t mcmc_warmup = 20, mcmc_steps = 30;  // a MALA step on 1000 chains costs ~15 training steps
};

int train(Options& o) {
    const ember::ImageSet data = ember_examples::load_images(o, true);
    ember::BatchIterator<float> batches(ember::scale_to_symmetric(data.images),  // [-1, 1], as G's Tanh
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    // An epoch: the whole steps (energy_steps batches each) that fit in a pass over the data.
    const std::int64_t steps_per_epoch = std::max<std::int64_t>(1, batches.batches_per_epoch() / o.meg.energy_steps);
    ember_examples::TrainingRun run(o, {.batches_per_epoch = steps_per_epoch * o.meg.energy_steps,
                                        .batches_per_step = o.meg.energy_steps});

    ember::Generator init(o.seed), noise(o.seed + 1);
    ember_examples::Meg m(init, o.nets, o.lr);
    ember::nn::Sequential<float>&G = m.gan.G, &U = m.gan.D;
    const Tensor<float> z_fixed = ember_examples::fixed_noise(100, o.nets.latent, o.seed + 2);  // every picture's z
    run.checkpoint.add("gen", G).add("energy", U).add("stat", m.T.net);
    run.checkpoint.add("opt_gen", m.opt_G, G).add("opt_energy", m.opt_U, U).add("opt_stat", m.opt_T, m.T.net);
    run.checkpoint.add("noise", noise).add("step", run.step);
    ember_examples::MetricsWindow<> window(run, {"loss_u", "loss_g", "u_real", "u_fake", "r1", "mi"});
    run.start({{"images", data.images.dim(0)}, {"G parameters", G.parameter_count()},
               {"U parameters", U.parameter_count()}, {"T parameters", m.T.net.parameter_count()}, {"beta", o.meg.beta},
               {"lambda", o.meg.lambda}, {"U steps per G step", o.meg.energy_steps},
               {"MALA steps", std::to_string(o.mcmc_warmup) + "+" + std::to_string(o.mcmc_steps)}});

    batches.seek(run.step * o.meg.energy_steps);
    while (run.running()) {
        if (o.lr_decay) m.set_lr(ember_examples::linearly_decayed_lr(o.lr, run.step, run.total));
        const ember_examples::MegLosses l =
            ember_examples::meg_step(m, o.meg, [&] { return batches.next_wrapping().x; }, noise);
        window.add(run.finish_step(), {l.u, l.g, l.u_real, l.u_fake, l.r1, l.mi});
        if (run.epoch_done()) {
            run.save_checkpoint();
            ember_examples::write_samples(run.out, m.gan.sample01(z_fixed));
            ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", {"loss_u", "loss_g", "mi"});
        }
    }

    // Samples G(z), then latent MALA from the same z.
    const Tensor<float> z0 = ember_examples::fixed_noise(o.n_samples, o.nets.latent, o.seed + 3);
    const Tensor<float> samples01 = m.gan.sample01(z0);
    ember_examples::write_samples(run.out, samples01);
    const ember_examples::LatentMala mcmc = ember_examples::meg_latent_mala(m, z0, o.mcmc_warmup, o.mcmc_steps, o.seed + 4);
    const Tensor<float> mcmc01 = m.gan.sample01(mcmc.z);
    ember_examples::write_samples(run.out, mcmc01, "samples_mcmc.png", "samples_mcmc.npy");
    ember_examples::print_latent_mala("meg_mnist", mcmc);
    run.result("MALA acceptance", mcmc.run.acceptance_rate);
    run.quality(samples01);
    run.quality(mcmc01, "after MALA");
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "meg_mnist", o.epochs = 24, o.batch = 64, o.lr = 2e-4;  // 22 488 steps (wall time: docs/results.md)
    ember_examples::Flags flags("meg_mnist: maximum-entropy generator and energy model on MNIST (Kumar et al. 2019)", o);
    using ember_examples::Check;
    flags.add("--beta", o.meg.beta, "weight β of the entropy term -β I_JSD(G(z); z) in L_G", Check::non_negative)
        .add("--lambda", o.meg.lambda, "weight λ of the gradient penalty on real data", Check::non_negative)
        .add("--width", o.nets.width, "channels of U's first and G's last convolution", Check::positive)
        .add("--upsample-conv", o.nets.upsample_conv, "G upsamples by nearest 2x + Conv 3x3 (1) or ConvTranspose (0)")
        .add("--lr-decay", o.lr_decay, "decay the lr linearly to 0 over the run (1) or keep it constant (0)")
        .add("--energy-steps", o.meg.energy_steps, "energy steps per generator step", Check::positive)
        .add("--mcmc-warmup", o.mcmc_warmup, "latent MALA warm-up steps (step size adapted)", Check::non_negative)
        .add("--mcmc-steps", o.mcmc_steps, "latent MALA steps after warm-up (step size fixed)", Check::non_negative)
        .quick_default("--mcmc-warmup", o.mcmc_warmup, std::int64_t{10})
        .quick_default("--mcmc-steps", o.mcmc_steps, std::int64_t{10});
    return flags.run(argc, argv, {.iters = 100}, [&] { return train(o); });
}
