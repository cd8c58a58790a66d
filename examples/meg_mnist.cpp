// meg_mnist: the maximum-entropy generator (MEG; Kumar, Ozair, Goyal, Courville and Bengio
// 2019, "Maximum Entropy Generators for Energy-Based Models"; seeds 000/001, MATH.md §1, §2
// and §7) on MNIST: an energy model U and a generator G that learns to sample from it.
//
// The energy model q_θ(x) = e^{-U(x)}/Z is trained by the contrastive loss with the
// generator's samples as negatives, plus the zero-centred gradient penalty on real data:
//   L_U = E_x[U(x)] - E_z[U(G(z))] + λ E_x ||∇_x U(x)||²               (energy/contrastive, penalty)
// The generator minimises KL(q_φ || q_θ) = E_z[U(G(z))] - H(q_φ) + log Z; for a
// deterministic G the entropy is I(G(z); z) up to a constant, estimated by the
// Jensen-Shannon bound of a statistics network T(x, z) (Deep InfoMax):
//   L_G = E_z[U(G(z))] - β Î_JSD(G(z); z),                              (info/meg, info/mi)
//   Î_JSD = E_joint[-sp(-T(G(z_i), z_i))] - E_marg[sp(T(G(z_i), z_π(i)))],  π a derangement.
// As in the paper's code, G and T take their steps on the same loss: T maximises Î_JSD
// (with Adam the factor β does not matter), G maximises it and lowers its samples' energy.
//
// At the end, the generator's samples are refined by MCMC in latent space (MATH.md §7):
// MALA on U_z(z) = U(G(z)) + ½||z||², whose stationary distribution is the energy model
// pulled back through G, started from the very z of samples.npy; the step size is adapted
// toward 0.574 acceptance during warm-up only, then kept fixed (sample/latent.hpp,
// sample/langevin.hpp).
//
// Networks (DCGAN-style, small enough for a CPU; common/conv_gan.hpp, z has 64 dimensions,
// width w = 32 by default):
//   G: z -> Linear 2w·7·7 -> BN, ReLU -> Upsample 2, Conv3x3 w (14x14) -> BN, ReLU
//        -> Upsample 2, Conv3x3 1 (28x28) -> Tanh    (--upsample-conv 0: ConvTranspose 4x4/2 for each)
//   U: x -> Conv 4x4/2 w -> LReLU -> Conv 4x4/2 2w -> LReLU -> Linear 1    (no BatchNorm: the
//      penalty needs per-sample gradients)
//   G's samples use BatchNorm's running statistics, so that a sample does not depend on the
//   others of its batch; latent MALA needs exactly that.
//   T: [x, z] (784 + 64) -> Linear 512 -> LReLU -> Linear 1
// All trained by Adam (betas 0.5 / 0.9, the paper code's; lr 2e-4 falling linearly to 0 over
// the run, where the paper's code keeps 1e-4; 24 epochs take about 11 minutes on 2 cores);
// λ = 10, β = 1.
// Pixels are in [-1, 1] inside the models.
//
//   meg_mnist [--data DIR] [--dataset mnist|fashion] [--out DIR] [--epochs N | --iters N]
//             [--batch N] [--lr X] [--seed N] [--threads N] [--n-samples N] [--classifier FILE]
//             [--beta X] [--lambda X] [--width N] [--upsample-conv 0|1] [--lr-decay 0|1]
//             [--energy-steps N] [--mcmc-warmup N] [--mcmc-steps N]
//             [--resume] [--quick]
//
// Writes to --out: samples.png / samples.npy (G(z), float32 [N,1,28,28] in [0,1]),
// samples_mcmc.png / samples_mcmc.npy (G(z) after latent MALA from the same z),
// metrics.csv, loss.png, checkpoint.safetensors (every epoch and at the end; --resume
// continues from it bit for bit).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <ember/ember.hpp>
#include <filesystem>
#include <optional>

#include "common/conv_gan.hpp"
#include "common/example.hpp"
#include "common/latent_mala.hpp"
#include "common/quality.hpp"

namespace fs = std::filesystem;
namespace nn = ember::nn;
using ember::Index;
using ember::Shape;
using ember::Tensor;
using Var = ember::Var<float>;

namespace {

struct MegOptions {
    double beta = 1.0;       // weight of the entropy (MI) term in L_G
    double lambda = 10.0;    // zero-centred gradient penalty on real data
    int energy_steps = 1;    // U steps per G step
    Index latent = 64;
    Index width = 32;        // channels of G's and U's convolutions (common/conv_gan.hpp)
    bool upsample_conv = true;  // G upsamples by nearest 2x + 3x3 conv instead of ConvTranspose
    bool lr_decay = true;    // lr falls linearly from --lr to 0 over the run
    std::int64_t mcmc_warmup = 20, mcmc_steps = 30;  // each step costs ~15 training steps (1000 chains)
};

// The statistics network T(x, z) on concatenated pairs: scores [B, 1].
struct StatisticsNet {
    nn::Sequential<float> net;
    StatisticsNet(Index latent, ember::Generator& init) {
        net.add<nn::Linear>(784 + latent, 512, init);
        net.add<nn::LeakyReLU>(0.2);
        net.add<nn::Linear>(512, 1, init);
    }
    Var operator()(const Var& x_flat, const Var& z) { return net(ember::concat<float>({x_flat, z}, 1)); }
};

int run(ember_examples::ExampleOptions& o, const MegOptions& m) {
    const int threads = ember_examples::use_threads(o);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: training images [N,1,28,28] scaled to [-1, 1] ------------------------------
    const ember::ImageSet train = ember_examples::load_images(o, true);
    const Index N = train.images.dim(0);
    const Tensor<float> images = ember::scale_to_symmetric(train.images);
    ember::BatchIterator<float> batches(images, {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    // A step is one G step after energy_steps U steps, each on its own batch of real images.
    const std::int64_t steps_per_epoch = std::max<std::int64_t>(1, per_epoch / m.energy_steps);
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * steps_per_epoch;

    // ---- the three networks ----------------------------------------------------------------
    ember::Generator init(o.seed);
    ember_examples::ConvGan gan(init, {.latent = m.latent, .width = m.width, .upsample_conv = m.upsample_conv});
    nn::Sequential<float>&G = gan.G, &U = gan.D;
    StatisticsNet T(m.latent, init);
    const ember::AdamOptions adam{.lr = o.lr, .betas = {0.5, 0.9}};
    ember::Adam<float> opt_G(G.parameters(), adam), opt_U(U.parameters(), adam), opt_T(T.net.parameters(), adam);

    ember::Generator noise(o.seed + 1);  // z of every step and the derangements of the MI estimate
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    ckpt.add("gen", G).add("energy", U).add("stat", T.net);
    ckpt.add("opt_gen", opt_G, G).add("opt_energy", opt_U, U).add("opt_stat", opt_T, T.net);
    ckpt.add("noise", noise).add("step", step);
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), o.name.c_str(), "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    std::printf("meg_mnist: %s, %lld images; G %lld, U %lld, T %lld parameters; batch %lld, lr %g, beta %g, "
                "lambda %g, %d U step(s) per G step, %lld steps (%lld per epoch), MALA %lld+%lld steps, seed %llu, "
                "%d threads\n",
                o.dataset.c_str(), static_cast<long long>(N), static_cast<long long>(G.parameter_count()),
                static_cast<long long>(U.parameter_count()), static_cast<long long>(T.net.parameter_count()),
                static_cast<long long>(o.batch), o.lr, m.beta, m.lambda, m.energy_steps, static_cast<long long>(total),
                static_cast<long long>(steps_per_epoch), static_cast<long long>(m.mcmc_warmup),
                static_cast<long long>(m.mcmc_steps), static_cast<unsigned long long>(o.seed), threads);
    std::fflush(stdout);

    auto energy = [&](const Var& x) { return U(x); };
    const Tensor<float> z_fixed = [&] {  // the same 100 z for every picture
        ember::Generator g(o.seed + 2);
        return ember::normal<float>(Shape{100, m.latent}, g);
    }();
    const std::map<std::string, std::string> about{{"example", o.name}, {"dataset", o.dataset}};
    auto save_state = [&] {
        ckpt.save(ckpt_path, about);
        ember_examples::write_samples(out, gan.sample01(z_fixed));
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"loss_u", "loss_g", "mi"});
    };

    // ---- training --------------------------------------------------------------------------
    ember::MetricsLog metrics(out / "metrics.csv", step);
    ember::Progress progress(total, {.label = o.name, .start_step = step, .every_steps = 500});
    struct Window {
        double loss_u = 0, loss_g = 0, u_real = 0, u_fake = 0, r1 = 0, mi = 0;
        int n = 0;
    } window, logged;
    // Every step reads energy_steps batches: resume at the batch after the last one read.
    const std::int64_t consumed = step * m.energy_steps;
    batches.seek(consumed);
    auto next_batch = [&] { return batches.next_wrapping().x; };
    // One U step per batch of real images; a G step after every `energy_steps` of them.
    while (step < total) {
        // Energy: L_U = E U(x) - E U(G(z)) + λ E||∇_x U(x)||², the negatives detached.
        float loss_u_value = 0, u_real = 0, u_fake = 0, r1_value = 0;
        if (m.lr_decay) {
            const double lr = ember_examples::linearly_decayed_lr(o.lr, step, total);
            opt_U.set_lr(lr), opt_G.set_lr(lr), opt_T.set_lr(lr);
        }
        for (int k = 0; k < m.energy_steps; ++k) {
            const Var x(next_batch());
            Tensor<float> fake;
            {
                ember::NoGrad no_grad;
                fake = G(Var(ember::normal<float>(Shape{o.batch, m.latent}, noise))).value();
            }
            const Var u_pos = U(x), u_neg = U(Var(fake));
            const Var r1 = ember::energy::r1_penalty(energy, x, m.lambda);
            const Var loss_u = ember::energy::contrastive_loss(u_pos, u_neg) + r1;
            opt_U.zero_grad();
            ember::backward(loss_u);
            opt_U.step();
            loss_u_value = loss_u.item(), r1_value = r1.item();
            u_real = ember::mean(u_pos.value()).item(), u_fake = ember::mean(u_neg.value()).item();
        }

        // Generator and statistics network: L_G = E U(G(z)) - β Î_JSD(G(z); z), U frozen.
        const Tensor<float> z = ember::normal<float>(Shape{o.batch, m.latent}, noise);
        const Var zv(z);
        const Var fake_flat = ember::flatten(G(zv), 1);
        const auto pairs = ember::info::shuffled_pairs(fake_flat, zv, noise);
        const Var mi = ember::info::jsd(T(fake_flat, zv), T(fake_flat, pairs.z));
        U.requires_grad(false);
        const Var u_gen = U(ember::reshape(fake_flat, Shape{o.batch, 1, 28, 28}));
        const Var loss_g = ember::info::meg_generator_loss(u_gen, mi, m.beta);
        opt_G.zero_grad();
        opt_T.zero_grad();
        ember::backward(loss_g);
        opt_G.step();
        opt_T.step();
        U.requires_grad(true);
        ++step;

        window.loss_u += loss_u_value, window.loss_g += loss_g.item(), window.u_real += u_real,
            window.u_fake += u_fake, window.r1 += r1_value, window.mi += mi.item();
        ++window.n;
        progress.update(step, {{"loss_u", loss_u_value}, {"loss_g", loss_g.item()}, {"mi", mi.item()}});
        if (step % 50 == 0 || step == total) {
            const double k = window.n;
            logged = {window.loss_u / k, window.loss_g / k, window.u_real / k, window.u_fake / k, window.r1 / k,
                      window.mi / k, window.n};
            metrics.write(step, {{"epoch", static_cast<double>(step) / static_cast<double>(steps_per_epoch)},
                                 {"loss_u", logged.loss_u},
                                 {"loss_g", logged.loss_g},
                                 {"u_real", logged.u_real},
                                 {"u_fake", logged.u_fake},
                                 {"r1", logged.r1},
                                 {"mi", logged.mi}});
            window = {};
        }
        if (step % steps_per_epoch == 0 || step == total) save_state();
    }
    progress.finish();
    if (step == 0 || total == 0) save_state();  // nothing trained (a resumed finished run): pictures all the same

    // ---- samples: G(z), then latent MALA from the same z ------------------------------------
    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> z0 = ember::normal<float>(Shape{o.n_samples, m.latent}, sample_noise);
    const Tensor<float> samples01 = gan.sample01(z0);
    ember_examples::write_samples(out, samples01);

    G.eval();  // per-sample generator for U_z; parameters frozen: only ∇_z is needed
    G.requires_grad(false);
    U.requires_grad(false);
    const ember_examples::LatentMala mcmc = ember_examples::latent_mala([&](const Var& z) { return G(z); }, energy, z0,
                                                                         m.mcmc_warmup, m.mcmc_steps, o.seed + 4);
    const Tensor<float> mcmc01 = gan.sample01(mcmc.z);
    ember_examples::write_samples(out, mcmc01, "samples_mcmc.png", "samples_mcmc.npy");
    ember_examples::print_latent_mala("meg_mnist", mcmc);

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // (A resumed run that was already finished trains nothing: no window to report.)
    char window_text[256] = "no training steps in this run";
    if (logged.n > 0)
        std::snprintf(window_text, sizeof window_text,
                      "last logged window: loss_u %.3f, loss_g %.3f, U(x) %.3f, U(G(z)) %.3f, R1 %.3f, I_JSD %.3f",
                      logged.loss_u, logged.loss_g, logged.u_real, logged.u_fake, logged.r1, logged.mi);
    std::printf("meg_mnist: %lld steps in %.1f s with %d threads; %s; MALA acceptance %.3f; wrote "
                "%s/{samples,samples_mcmc}.{png,npy}, metrics.csv, loss.png, checkpoint.safetensors\n",
                static_cast<long long>(step), seconds, threads, window_text, mcmc.run.acceptance_rate, o.out.c_str());
    std::fflush(stdout);
    ember_examples::report_sample_quality(o, samples01);
    ember_examples::ExampleOptions after = o;
    after.name = o.name + " (after MALA)";
    ember_examples::report_sample_quality(after, mcmc01);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "meg_mnist", o.epochs = 24, o.batch = 64, o.lr = 2e-4;  // 22 488 steps
    MegOptions m;
    CLI::App app{"meg_mnist: maximum-entropy generator and energy model on MNIST (Kumar et al. 2019)"};
    ember_examples::add_common_options(app, o);
    app.add_option("--beta", m.beta, "weight of the entropy term -beta I_JSD(G(z); z) in the generator loss")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--lambda", m.lambda, "zero-centred gradient penalty lambda E||grad_x U(x)||^2 on real data")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--width", m.width, "channels of the first convolution of U and the last of G (DCGAN width)")
        ->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--upsample-conv", m.upsample_conv, "G upsamples by nearest 2x then a 3x3 conv (1) or by ConvTranspose 4x4/2 (0)")->capture_default_str();
    app.add_option("--lr-decay", m.lr_decay, "decay the lr linearly to 0 over the run (1) or keep it constant (0)")->capture_default_str();
    app.add_option("--energy-steps", m.energy_steps, "energy steps per generator step")
        ->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--mcmc-warmup", m.mcmc_warmup, "latent MALA warm-up steps (step size adapted)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--mcmc-steps", m.mcmc_steps, "latent MALA steps after warm-up (fixed step size)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    ember_examples::apply_quick(app, o, 100);
    if (o.quick) {
        if (app.count("--mcmc-warmup") == 0) m.mcmc_warmup = 10;
        if (app.count("--mcmc-steps") == 0) m.mcmc_steps = 10;
    }
    return ember_examples::run_main(o.name, [&] { return run(o, m); });
}
