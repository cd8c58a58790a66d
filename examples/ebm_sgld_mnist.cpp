// ebm_sgld_mnist: a pure energy-based model of MNIST trained by short-run SGLD from a
// replay buffer, as in IGEBM (Du and Mordatch 2019, "Implicit Generation and Generalization
// in Energy-Based Models") and JEM (Grathwohl et al. 2020); MATH.md §1 and §7.
//
// The model is q_θ(x) = e^{-E_θ(x)}/Z with E a small conv net and nothing else: no
// generator. The gradient of the negative log-likelihood is a positive phase on the data
// minus a negative phase on samples of the model itself,
//   ∇_θ E_p[-log q_θ(x)] = E_p[∇_θ E(x)] - E_{q_θ}[∇_θ E(x)],
// and the samples x⁻ come from persistent short-run chains of stochastic-gradient
// Langevin dynamics (sample/sgld.hpp, sample/replay_buffer.hpp):
//   1. take B states from a buffer of 10000, each replaced by uniform noise with
//      probability 5% (fresh chains keep the buffer from collapsing onto a few modes);
//   2. K = 20 steps  x ← clamp(x - α clip(∇_x E(x), ±c) + σ ξ, -1, 1)  with α = 10,
//      c = 0.03 and σ = 0.005: far less noise than Langevin's √(2α), a noisy optimiser as
//      IGEBM and JEM use it. Clipping each pixel's gradient at c lets the step be large (a
//      pixel moves at most α·c = 0.3 per step) without a few large gradients throwing the
//      chain out of the data range; these are the settings of P. Lippe's UvA deep-learning
//      tutorial on EBMs for MNIST. (α = 1, σ = 0.01, no clipping, as JEM uses for its large
//      nets, barely moves the chains of an energy this small: docs/results.md);
//   3. push the states back into their slots;
//   4. one Adam step on  L = E(x⁺) - E(x⁻) + α_reg (E(x⁺)² + E(x⁻)²)   (energy/contrastive),
//      the L2 term (IGEBM) keeping the energies near zero, which the contrastive term alone
//      (invariant to a constant shift of E) does not.
//
// Energy network (SiLU, smooth, so that ∇_x E is well behaved along the chains):
//   x -> Conv 4x4/2 16 -> SiLU -> Conv 4x4/2 32 -> SiLU -> Linear 64 -> SiLU -> Linear 1
// (small: every training step evaluates it and its input gradient K + 1 times)
// Adam lr 1e-4, betas (0, 0.999) as IGEBM; pixels in [-1, 1] inside the model.
//
//   ebm_sgld_mnist [--data DIR] [--dataset mnist|fashion] [--out DIR] [--epochs N | --iters N]
//                  [--batch N] [--lr X] [--seed N] [--threads N] [--n-samples N]
//                  [--classifier FILE] [--sgld-steps K] [--sgld-step X] [--sgld-noise X]
//                  [--sgld-grad-clip X] [--alpha X] [--buffer N] [--reinit P] [--fresh-steps N]
//                  [--resume] [--quick]
//
// Writes to --out: samples.png / samples.npy (from the replay buffer: N of its chains, each
// advanced K more SGLD steps), samples_fresh.png / samples_fresh.npy (new chains started at
// uniform noise, --fresh-steps SGLD steps), metrics.csv, loss.png, and
// checkpoint.safetensors (model, optimiser, the whole buffer and the random streams, every
// epoch and at the end; --resume continues from it bit for bit).
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <ember/ember.hpp>
#include <filesystem>
#include <numeric>

#include "common/example.hpp"
#include "common/quality.hpp"

namespace fs = std::filesystem;
namespace nn = ember::nn;
using ember::Index;
using ember::Shape;
using ember::Tensor;
using Var = ember::Var<float>;

namespace {

struct EbmOptions {
    int sgld_steps = 20;        // K per training iteration
    double sgld_step = 10.0;    // α
    double sgld_noise = 0.005;  // σ
    double grad_clip = 0.03;    // c: each element of ∇_x E clipped to ±c (0: off)
    double alpha = 0.1;         // L2 energy regularisation
    Index buffer = 10000;
    double reinit = 0.05;
    int fresh_steps = 100;      // SGLD steps of the chains started at noise, at the end
};

// The replay buffer's states as a module buffer, so that Checkpoint saves and restores
// them with everything else (copied in before a save, pushed back after a load).
class BufferState : public nn::Module<float> {
public:
    explicit BufferState(const Shape& shape) { states = register_buffer("states", Tensor<float>::zeros(shape)); }
    Var forward(const Var&) override { throw ember::Error("BufferState holds data only"); }
    std::string describe() const override { return "BufferState"; }
    Tensor<float> states;
};

// Uniform noise in [-1, 1]: where every chain starts.
Tensor<float> uniform_images(Index n, ember::Generator& gen) {
    return Tensor<float>(ember::uniform<float>(Shape{n, 1, 28, 28}, gen) * 2.0f - 1.0f);
}


int run(ember_examples::ExampleOptions& o, const EbmOptions& e) {
    const int threads = ember_examples::use_threads(o);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: training images [N,1,28,28] in [-1, 1] ---------------------------------------
    const ember::ImageSet train = ember_examples::load_images(o, true);
    const Index N = train.images.dim(0);
    const Tensor<float> images = ember::scale_to_symmetric(train.images);
    ember::BatchIterator<float> batches(images, {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch;

    // ---- energy network, buffer, sampler -----------------------------------------------------
    ember::Generator init(o.seed);
    nn::Sequential<float> E;
    E.add<nn::Conv2d>(1, 16, 4, init, nn::Conv2dOptions{.stride = 2, .padding = 1});
    E.add<nn::SiLU>();
    E.add<nn::Conv2d>(16, 32, 4, init, nn::Conv2dOptions{.stride = 2, .padding = 1});
    E.add<nn::SiLU>();
    E.add<nn::Flatten>();
    E.add<nn::Linear>(32 * 7 * 7, 64, init);
    E.add<nn::SiLU>();
    E.add<nn::Linear>(64, 1, init);
    ember::Adam<float> opt(E.parameters(), {.lr = o.lr, .betas = {0.0, 0.999}});
    const ember::sample::EnergyFn<float> energy = [&](const Var& x) { return E(x); };
    const ember::sample::SgldOptions sgld{
        .step_size = e.sgld_step, .noise = e.sgld_noise, .steps = e.sgld_steps, .grad_clip = e.grad_clip,
        .clamp_min = -1, .clamp_max = 1};

    ember::Generator chains(o.seed + 1);  // buffer slots, re-initialisations and SGLD noise
    ember::sample::ReplayBuffer<float> buffer(e.buffer, uniform_images, chains, e.reinit);
    BufferState saved(buffer.states().shape());
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    ckpt.add("energy", E).add("opt_energy", opt, E).add("buffer", saved).add("chains", chains).add("step", step);
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), o.name.c_str(), "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::vector<Index> all(static_cast<std::size_t>(e.buffer));
        std::iota(all.begin(), all.end(), Index{0});
        buffer.push(all, saved.states);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    std::printf("ebm_sgld_mnist: %s, %lld images; E %lld parameters; batch %lld, lr %g, alpha %g; SGLD K %d, step %g, "
                "noise %g, gradient clip %g; buffer %lld, reinit %g; %lld steps (%lld per epoch), seed %llu, %d threads\n",
                o.dataset.c_str(), static_cast<long long>(N), static_cast<long long>(E.parameter_count()),
                static_cast<long long>(o.batch), o.lr, e.alpha, e.sgld_steps, e.sgld_step, e.sgld_noise, e.grad_clip,
                static_cast<long long>(e.buffer), e.reinit, static_cast<long long>(total),
                static_cast<long long>(per_epoch), static_cast<unsigned long long>(o.seed), threads);
    std::fflush(stdout);

    const std::map<std::string, std::string> about{{"example", o.name}, {"dataset", o.dataset}};
    auto save_state = [&] {
        saved.states.copy_from(buffer.states());
        ckpt.save(ckpt_path, about);
        // The picture during training: the first 100 chains of the buffer as they are.
        ember_examples::write_samples(out, ember::symmetric_to_unit(buffer.states().slice(0, 0, 100).contiguous()));
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"loss", "e_pos", "e_neg"});
    };

    // ---- training ------------------------------------------------------------------------------
    ember::MetricsLog metrics(out / "metrics.csv", step);
    ember::Progress progress(total, {.label = o.name, .start_step = step, .every_steps = 200});
    struct Window {
        double loss = 0, e_pos = 0, e_neg = 0, grad_norm = 0;
        int n = 0;
    } window, logged;
    batches.seek(step);
    while (step < total) {
        const ember::MiniBatch<float> batch = batches.next_wrapping();
        // Negatives: K SGLD steps from the buffer (5% fresh noise), pushed back.
        const auto from = buffer.sample(o.batch, chains);
        ember::sample::SgldStats stats;
        E.requires_grad(false);  // the chains need ∇_x E only
        const Tensor<float> negatives = ember::sample::sgld(energy, from.states, sgld, chains, &stats);
        E.requires_grad(true);
        buffer.push(from.indices, negatives);

        // L = E(x⁺) - E(x⁻) + α (E(x⁺)² + E(x⁻)²), the negatives constants.
        const Var e_pos = E(Var(batch.x)), e_neg = E(Var(negatives));
        const Var loss = ember::energy::contrastive_loss(e_pos, e_neg) +
                         ember::energy::magnitude_penalty(e_pos, e_neg, e.alpha);
        opt.zero_grad();
        ember::backward(loss);
        opt.step();
        ++step;

        const double ep = ember::mean(e_pos.value()).item(), en = ember::mean(e_neg.value()).item();
        window.loss += loss.item(), window.e_pos += ep, window.e_neg += en, window.grad_norm += stats.mean_grad_norm;
        ++window.n;
        progress.update(step, {{"loss", loss.item()}, {"e_pos", ep}, {"e_neg", en}});
        if (step % 50 == 0 || step == total) {
            const double k = window.n;
            logged = {window.loss / k, window.e_pos / k, window.e_neg / k, window.grad_norm / k, window.n};
            metrics.write(step, {{"epoch", static_cast<double>(step) / static_cast<double>(per_epoch)},
                                 {"loss", logged.loss},
                                 {"e_pos", logged.e_pos},
                                 {"e_neg", logged.e_neg},
                                 {"sgld_grad_norm", logged.grad_norm}});
            window = {};
        }
        if (step % per_epoch == 0 || step == total) save_state();
    }
    progress.finish();
    if (step == 0 || total == 0) save_state();

    // ---- samples -------------------------------------------------------------------------------
    // From the buffer: its first n chains (the slots are exchangeable), each run K more SGLD
    // steps, so that the few slots whose last visit re-initialised them are refined too.
    // Fresh: chains started at uniform noise, --fresh-steps steps: what the model alone
    // generates without the buffer's long history.
    E.requires_grad(false);
    const Index n = std::min(o.n_samples, e.buffer);
    EMBER_CHECK(n == o.n_samples, o.name.c_str(), "--n-samples ", o.n_samples, " exceeds the buffer of ", e.buffer);
    ember::Generator sample_noise(o.seed + 3);
    ember::sample::SgldStats buffer_stats, fresh_stats;
    const Tensor<float> from_buffer = ember::sample::sgld(energy, buffer.states().slice(0, 0, n).contiguous(), sgld,
                                                          sample_noise, &buffer_stats);
    const Tensor<float> samples01 = ember::symmetric_to_unit(from_buffer);
    ember_examples::write_samples(out, samples01);
    ember::sample::SgldOptions fresh_opts = sgld;
    fresh_opts.steps = e.fresh_steps;
    const Tensor<float> fresh = ember::sample::sgld(energy, uniform_images(n, sample_noise), fresh_opts, sample_noise,
                                                    &fresh_stats);
    const Tensor<float> fresh01 = ember::symmetric_to_unit(fresh);
    ember_examples::write_samples(out, fresh01, "samples_fresh.png", "samples_fresh.npy");

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // (A resumed run that was already finished trains nothing: no window to report.)
    char window_text[256] = "no training steps in this run";
    if (logged.n > 0)
        std::snprintf(window_text, sizeof window_text,
                      "last logged window: loss %.4f, E(x+) %.4f, E(x-) %.4f, SGLD |grad E| %.4f", logged.loss,
                      logged.e_pos, logged.e_neg, logged.grad_norm);
    std::printf("ebm_sgld_mnist: %lld steps in %.1f s with %d threads; %s; final E: buffer samples %.4f, fresh "
                "chains (%d steps) %.4f; wrote %s/{samples,samples_fresh}.{png,npy}, metrics.csv, loss.png, "
                "checkpoint.safetensors\n",
                static_cast<long long>(step), seconds, threads, window_text, buffer_stats.mean_energy_end,
                e.fresh_steps, fresh_stats.mean_energy_end, o.out.c_str());
    std::fflush(stdout);
    ember_examples::report_sample_quality(o, samples01);
    ember_examples::ExampleOptions from_noise = o;
    from_noise.name = o.name + " (fresh chains)";
    ember_examples::report_sample_quality(from_noise, fresh01);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "ebm_sgld_mnist", o.epochs = 10, o.batch = 64, o.lr = 1e-4;
    EbmOptions e;
    CLI::App app{"ebm_sgld_mnist: an energy-based model trained by short-run SGLD from a replay buffer (IGEBM, JEM)"};
    ember_examples::add_common_options(app, o);
    app.add_option("--sgld-steps", e.sgld_steps, "SGLD steps K per training iteration")
        ->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--sgld-step", e.sgld_step, "SGLD step size alpha (multiplies grad E)")
        ->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--sgld-noise", e.sgld_noise, "standard deviation of the SGLD noise")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--sgld-grad-clip", e.grad_clip, "clip each element of grad E to +-X before the SGLD step (0: off)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--alpha", e.alpha, "L2 energy regularisation alpha (E(x+)^2 + E(x-)^2)")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    app.add_option("--buffer", e.buffer, "replay buffer capacity")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--reinit", e.reinit, "probability that a chain restarts from noise")
        ->check(CLI::Range(0.0, 1.0))->capture_default_str();
    app.add_option("--fresh-steps", e.fresh_steps, "SGLD steps of the chains started at noise, at the end")
        ->check(CLI::NonNegativeNumber)->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    ember_examples::apply_quick(app, o, 60);
    if (o.quick) {
        if (app.count("--buffer") == 0) e.buffer = 1000;
        if (app.count("--fresh-steps") == 0) e.fresh_steps = 20;
    }
    return ember_examples::run_main(o.name, [&] { return run(o, e); });
}
