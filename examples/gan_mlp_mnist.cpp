// gan_mlp_mnist: the original GAN of Goodfellow et al. (2014) with multilayer perceptrons on
// MNIST, with the non-saturating generator loss the paper recommends in practice
// (docs/math.md §4.1, §4.2). With a = D(x) the discriminator's logit, D = σ(a), sp = softplus:
//
//   L_D = E_x[sp(-a(x))] + E_z[sp(a(G(z)))]   = -E log D(x) - E log(1 - D(G(z)))
//   L_G = E_z[sp(-a(G(z)))]                   = -E log D(G(z)), gan::generator_loss_nonsaturating
//
// L_D is the negated value V(D, G) of the minimax game, whose optimal discriminator makes it
// 2·JSD(p_data || p_G) - log 4; the non-saturating L_G has the same fixed point but keeps its
// gradient while D still rejects the samples confidently.
//
// Networks (common/mlp_gan.hpp): G 64-256-512-784, D 784-512-256-1; batch 64, Adam 2e-4
// (0.5, 0.999). bench/bench_models.cpp times train_step (BM_GanMlpStep).
//
// Data parallel over MPI when built with ember::dist (EMBER_WITH_MPI), with the same flags:
//   mpirun -np K gan_mlp_mnist --threads T ...
// --batch stays the global batch (divisible by K): every rank takes its shard of each batch
// and of each step's noise, the gradients are averaged over the ranks before each Adam step,
// so K processes take the same steps as one (up to rounding). Without --threads the
// hardware threads are divided among the ranks on a machine. Rank 0 alone prints and writes
// files. The MPI calls are World's, in common/mlp_gan.hpp; see docs/distributed.md.
//
// Writes to --out: samples.png (10x10 grid from fixed noise, every epoch), samples.npy
// (float32 [N,1,28,28] in [0,1]), metrics.csv, loss.png, checkpoint.safetensors (every
// epoch; --resume continues from it bit for bit) and summary.json. `--help` lists the flags.
#include <functional>

#include "common/mlp_gan.hpp"

namespace ember_examples {

struct GanLosses {
    float d, g;
    float d_real, d_fake;  // mean D(x) = σ(a(x)) and D(G(z)), before the D step
};

// One D step, then one G step through the updated D; real [B, 784] in [-1, 1], z [B, 64].
// `before_update(net)` runs between each backward and its Adam step (data-parallel training
// averages the gradients over the processes there).
inline GanLosses train_step(MlpGan& gan, const ember::Tensor<float>& real, const ember::Tensor<float>& z,
                            const std::function<void(ember::nn::Module<float>&)>& before_update = {}) {
    using Var = ember::Var<float>;
    const ember::Index B = real.dim(0);
    const Var fake = gan.G(Var(z));

    // D: the logits of [x; G(z)] in one pass, G(z) detached. With s = +1 on the real rows and
    // -1 on the generated ones, L_D = 2·mean(sp(-s·a)) over the 2B rows.
    const Var logits = gan.D(ember::concat<float>({Var(real), fake.detach()}, 0));
    const Var loss_d = 2.0f * ember::mean(Var(ember::softplus(-gan.real_fake_signs(B) * logits)));
    gan.opt_D->zero_grad();
    ember::backward(loss_d);
    if (before_update) before_update(gan.D);
    gan.opt_D->step();

    // G: L_G through the updated D, whose parameters are frozen meanwhile.
    gan.D.requires_grad(false);
    const Var loss_g = ember::gan::generator_loss_nonsaturating(gan.D(fake));
    gan.opt_G->zero_grad();
    ember::backward(loss_g);
    if (before_update) before_update(gan.G);
    gan.opt_G->step();
    gan.D.requires_grad(true);

    ember::NoGrad no_grad;
    const ember::Tensor<float> p = ember::sigmoid(logits.value());
    return {loss_d.item(), loss_g.item(), ember::mean(p.slice(0, 0, B)).item(), ember::mean(p.slice(0, B, 2 * B)).item()};
}

}  // namespace ember_examples

#ifndef EMBER_EXAMPLE_STEP_ONLY  // defined by a benchmark that includes this file for train_step
#include <chrono>

#include "common/run.hpp"

namespace {

using ember::Tensor;

int train(ember_examples::ExampleOptions& o, ember_examples::World& world) {
    EMBER_CHECK(o.batch % world.size == 0, o.name.c_str(), "--batch ", o.batch, " must be divisible by the ",
                world.size, " processes");
    o.threads = world.threads(o.threads);
    const ember::ImageSet data = ember_examples::load_images(o, true);
    auto batches = world.batches(ember::scale_to_symmetric(data.images).reshape(ember::Shape{data.images.dim(0), 784}),
                                 {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const ember::Index per_epoch = batches.batches_per_epoch();
    ember_examples::TrainingRun run(o, {.batches_per_epoch = per_epoch, .progress_every = 1000, .reports = world.root()});

    ember::Generator init(o.seed), noise(o.seed + 1);  // noise: the z of every step
    ember_examples::MlpGan gan(init, {.lr = o.lr});
    world.broadcast(gan.G), world.broadcast(gan.D);  // all ranks drew the same; now it is certain
    const Tensor<float> z_fixed = ember_examples::fixed_noise(100, 64, o.seed + 2);  // every picture's z
    run.checkpoint.add("gen", gan.G).add("disc", gan.D).add("opt_gen", *gan.opt_G, gan.G).add("opt_disc", *gan.opt_D, gan.D);
    run.checkpoint.add("noise", noise).add("step", run.step);
    if (world.size > 1 && world.root())
        std::printf("%s: data parallel over %d processes, local batch %lld\n", o.name.c_str(), world.size,
                    static_cast<long long>(o.batch / world.size));
    ember_examples::MetricsWindow<float> window(run, {"loss_d", "loss_g", "d_real", "d_fake"});
    run.start({{"images", data.images.dim(0)}, {"G parameters", gan.G.parameter_count()},
               {"D parameters", gan.D.parameter_count()}});

    const auto average = [&](ember::nn::Module<float>& m) { world.average_gradients(m); };
    batches.start_epoch(static_cast<std::uint64_t>(run.step / per_epoch), run.step % per_epoch);
    const std::int64_t first_step = run.step;
    const auto t_loop = std::chrono::steady_clock::now();
    while (run.running()) {
        auto batch = batches.next();  // (the MPI build's ShardedBatchIterator has no next_wrapping)
        if (!batch) batches.start_epoch(batches.epoch() + 1), batch = batches.next();
        const Tensor<float> z = world.shard(ember::normal<float>(ember::Shape{o.batch, 64}, noise));
        ember_examples::GanLosses l = ember_examples::train_step(gan, batch->x, z, average);
        world.mean(l.d, l.g, l.d_real, l.d_fake);
        window.add(run.finish_step(), {l.d, l.g, l.d_real, l.d_fake});
        if (run.epoch_done() && world.root()) {
            run.save_checkpoint();
            ember::save_image_grid(run.out / "samples.png", gan.sample01(z_fixed), 10, 0.0, 1.0);
            ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", {"loss_d", "loss_g"});
        }
    }
    world.report_throughput(o.name, static_cast<double>(run.step - first_step), static_cast<double>(o.batch),
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - t_loop).count(), o.threads);
    if (!world.root()) return 0;

    const Tensor<float> samples = gan.sample01(ember_examples::fixed_noise(o.n_samples, 64, o.seed + 3));
    ember::save_npy(run.out / "samples.npy", samples);  // samples.png stays the fixed-noise grid
    run.quality(samples);
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "gan_mlp_mnist", o.epochs = 30, o.batch = 64, o.lr = 2e-4;
    ember_examples::Flags flags("gan_mlp_mnist: a non-saturating MLP GAN on MNIST (Goodfellow et al. 2014)", o);
    return flags.run(argc, argv, {.iters = 300}, [&] {
        return ember_examples::World::run(argc, argv, [&](ember_examples::World& world) {
            return ember_examples::run_main(o.name, [&] { return train(o, world); });  // the message, named
        });
    });
}
#endif
