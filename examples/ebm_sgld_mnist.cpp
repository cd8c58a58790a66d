// ebm_sgld_mnist: a pure energy-based model of MNIST trained by short-run SGLD from a replay
// buffer, as in IGEBM (Du & Mordatch 2019) and JEM (Grathwohl et al. 2020); docs/math.md §1
// and §7.4. The model is q_θ(x) = e^{-E_θ(x)}/Z with E a small conv net
// (common/ebm_sgld_nets.hpp) and no generator. The gradient of the negative log-likelihood is
// a positive phase on the data minus a negative phase on samples of the model itself (§1.2),
//
//   ∇_θ E_p[-log q_θ(x)] = E_p[∇_θ E(x)] - E_{q_θ}[∇_θ E(x)],
//
// and the samples x⁻ come from persistent short-run chains of stochastic-gradient Langevin
// dynamics (sample::sgld, sample::ReplayBuffer). One training step:
//   1. take B states from a buffer of 10000, each replaced by uniform noise with probability
//      5% (fresh chains keep the buffer from collapsing onto a few modes);
//   2. K = 20 steps  x ← clamp(x - α clip(∇_x E(x), ±c) + σ ξ, -1, 1)  with α = 10, c = 0.03,
//      σ = 0.005 (§7.4): far less noise than Langevin's √(2α), a noisy optimiser as IGEBM and
//      JEM use it. Clipping each pixel's gradient at c lets the step be large (a pixel moves
//      at most α·c = 0.3 per step) without a few large gradients throwing the chain out of the
//      data range; the settings of P. Lippe's UvA deep-learning tutorial on EBMs for MNIST
//      (JEM's α = 1, σ = 0.01 without clipping barely moves the chains of an energy this
//      small: docs/results.md);
//   3. push the states back into their slots;
//   4. one Adam step (lr 1e-4, betas (0, 0.999) as IGEBM) on
//        L = E(x⁺) - E(x⁻) + α_reg (E(x⁺)² + E(x⁻)²)     energy::contrastive_loss (§1.3)
//                                                         + energy::magnitude_penalty (§1.6)
//      the L2 term keeping the energies near zero, which the contrastive term alone (invariant
//      to a constant shift of E) does not.
//
// Writes to --out: samples.png / samples.npy (from the replay buffer: N of its chains, each
// advanced K more SGLD steps), samples_fresh.png / samples_fresh.npy (new chains started at
// uniform noise, --fresh-steps SGLD steps), metrics.csv, loss.png, checkpoint.safetensors
// (model, optimiser, the whole buffer and the random streams, every epoch; --resume continues
// from it bit for bit) and summary.json. `--help` lists the flags.
#include "common/ebm_sgld_nets.hpp"
#include "common/run.hpp"

namespace {

using ember::Index;
using ember::Tensor;
using Var = ember::Var<float>;
namespace sample = ember::sample;

struct Options : ember_examples::ExampleOptions {
    int sgld_steps = 20;          // K per training step
    double sgld_step = 10.0;      // α
    double sgld_noise = 0.005;    // σ
    double grad_clip = 0.03;      // c: each element of ∇_x E clipped to ±c (0: off)
    double alpha = 0.1;           // α_reg: L2 energy regularisation
    Index buffer = 10000;
    double reinit = 0.05;
    int fresh_steps = 100;        // SGLD steps of the chains started at noise, at the end
};

int train(Options& o) {
    EMBER_CHECK(o.n_samples <= o.buffer, o.name.c_str(), "--n-samples ", o.n_samples, " exceeds the --buffer of ",
                o.buffer, " chains the samples come from");
    const ember::ImageSet data = ember_examples::load_images(o, true);
    ember::BatchIterator<float> batches(ember::scale_to_symmetric(data.images),  // [-1, 1]
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    ember_examples::TrainingRun run(o, {.batches_per_epoch = batches.batches_per_epoch(), .progress_every = 200});

    ember::Generator init(o.seed);
    ember_examples::EnergyNet E(init);
    ember::Adam<float> opt(E.parameters(), {.lr = o.lr, .betas = {0.0, 0.999}});
    const sample::EnergyFn<float> energy = [&](const Var& x) { return E(x); };
    const sample::SgldOptions sgld{.step_size = o.sgld_step, .noise = o.sgld_noise, .steps = o.sgld_steps,
                                   .grad_clip = o.grad_clip, .clamp_min = -1, .clamp_max = 1};
    ember::Generator chains(o.seed + 1);  // buffer slots, re-initialisations and SGLD noise
    sample::ReplayBuffer<float> buffer(o.buffer, ember_examples::uniform_images, chains, o.reinit);
    ember_examples::BufferState saved(buffer);
    run.checkpoint.add("energy", E).add("opt_energy", opt, E).add("buffer", saved).add("chains", chains).add("step", run.step);
    ember_examples::MetricsWindow window(run, {"loss", "e_pos", "e_neg", "sgld_grad_norm"});
    run.start({{"images", data.images.dim(0)}, {"E parameters", E.parameter_count()}, {"alpha", o.alpha},
               {"SGLD K", o.sgld_steps}, {"step", o.sgld_step}, {"noise", o.sgld_noise}, {"gradient clip", o.grad_clip},
               {"buffer", o.buffer}, {"reinit", o.reinit}});
    if (o.resume) saved.restore_to(buffer);

    auto save_state = [&] {
        saved.save_from(buffer);
        run.save_checkpoint();
        // The picture during training: the first 100 chains of the buffer as they are.
        ember_examples::write_samples(run.out, ember::symmetric_to_unit(buffer.states().slice(0, 0, 100).contiguous()));
        ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", {"loss", "e_pos", "e_neg"});
    };
    batches.seek(run.step);
    while (run.running()) {
        const Tensor<float> positives = batches.next_wrapping().x;
        // 1-3. Negatives: K SGLD steps from the buffer (5% fresh noise), pushed back.
        const auto from = buffer.sample(o.batch, chains);
        sample::SgldStats stats;
        E.requires_grad(false);  // the chains need ∇_x E only
        const Tensor<float> negatives = sample::sgld(energy, from.states, sgld, chains, &stats);
        E.requires_grad(true);
        buffer.push(from.indices, negatives);

        // 4. L = E(x⁺) - E(x⁻) + α_reg (E(x⁺)² + E(x⁻)²), the negatives constants.
        const Var e_pos = E(Var(positives)), e_neg = E(Var(negatives));
        const Var loss = ember::energy::contrastive_loss(e_pos, e_neg) + ember::energy::magnitude_penalty(e_pos, e_neg, o.alpha);
        opt.zero_grad();
        ember::backward(loss);
        opt.step();
        window.add(run.finish_step(), {loss.item(), ember::mean(e_pos.value()).item(), ember::mean(e_neg.value()).item(),
                                       stats.mean_grad_norm});
        if (run.epoch_done()) save_state();
    }

    // Samples from the buffer: its first n chains (the slots are exchangeable), each run K more
    // SGLD steps, so that the few slots whose last visit re-initialised them are refined too.
    // Fresh: chains started at uniform noise, --fresh-steps steps: what the model alone
    // generates without the buffer's long history.
    E.requires_grad(false);
    ember::Generator sample_noise(o.seed + 3);
    sample::SgldStats buffer_stats, fresh_stats;
    const Tensor<float> samples01 = ember::symmetric_to_unit(
        sample::sgld(energy, buffer.states().slice(0, 0, o.n_samples).contiguous(), sgld, sample_noise, &buffer_stats));
    ember_examples::write_samples(run.out, samples01);
    sample::SgldOptions fresh_sgld = sgld;
    fresh_sgld.steps = o.fresh_steps;
    const Tensor<float> fresh01 = ember::symmetric_to_unit(sample::sgld(
        energy, ember_examples::uniform_images(o.n_samples, sample_noise), fresh_sgld, sample_noise, &fresh_stats));
    ember_examples::write_samples(run.out, fresh01, "samples_fresh.png", "samples_fresh.npy");

    run.result("final E of the buffer samples", buffer_stats.mean_energy_end);
    run.result("final E of the fresh chains", fresh_stats.mean_energy_end);
    run.quality(samples01, "replay buffer");
    run.quality(fresh01, "fresh chains");
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "ebm_sgld_mnist", o.epochs = 10, o.batch = 64, o.lr = 1e-4;
    ember_examples::Flags flags("ebm_sgld_mnist: an energy-based model trained by short-run SGLD from a replay buffer (IGEBM, JEM)", o);
    using ember_examples::Check;
    flags.add("--sgld-steps", o.sgld_steps, "SGLD steps K per training iteration", Check::positive);
    flags.add("--sgld-step", o.sgld_step, "SGLD step size alpha (multiplies grad E)", Check::positive);
    flags.add("--sgld-noise", o.sgld_noise, "standard deviation of the SGLD noise", Check::non_negative);
    flags.add("--sgld-grad-clip", o.grad_clip, "clip each element of grad E to +-X before the SGLD step (0: off)",
              Check::non_negative);
    flags.add("--alpha", o.alpha, "L2 energy regularisation alpha (E(x+)^2 + E(x-)^2)", Check::non_negative);
    flags.add("--buffer", o.buffer, "replay buffer capacity", Check::positive);
    flags.add("--reinit", o.reinit, "probability that a chain restarts from noise", Check::unit_interval);
    flags.add("--fresh-steps", o.fresh_steps, "SGLD steps of the chains started at noise, at the end", Check::non_negative);
    flags.quick_default("--buffer", o.buffer, Index{1000}).quick_default("--fresh-steps", o.fresh_steps, 20);
    return flags.run(argc, argv, {.iters = 60}, [&] { return train(o); });
}
