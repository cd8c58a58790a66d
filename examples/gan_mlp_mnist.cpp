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
//                 [--batch N] [--lr X] [--seed N] [--threads N] [--n-samples N] [--classifier FILE] [--resume]
//                 [--quick]
//
// Writes to --out: samples.png (10x10 grid from fixed noise, refreshed every epoch),
// samples.npy (float32 [N,1,28,28] in [0,1]), metrics.csv, loss.png, and
// checkpoint.safetensors (every epoch and at the end; --resume continues from it, giving
// the same result bit for bit as an uninterrupted run with the same flags).
//
// Data parallel over MPI when built with ember::dist (EMBER_WITH_MPI), unchanged flags:
//   mpirun -np K gan_mlp_mnist --threads T ...
// --batch stays the global batch (it must be divisible by K): every rank takes its shard
// of each batch and of each step's noise, the gradients are averaged over the ranks before
// each Adam step, so K processes take the same steps as one process (up to rounding).
// Rank 0 alone prints and writes files. See docs/distributed.md.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <ember/ember.hpp>
#include <filesystem>
#include <iostream>
#include <thread>

#include "common/mlp_gan.hpp"
#include "common/quality.hpp"
#ifdef EMBER_WITH_MPI
#include <ember/dist/dist.hpp>
#endif

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;

namespace {

struct Options {
    std::string data, dataset = "mnist", out = "out/gan_mlp_mnist";
    std::string classifier;  // empty: out/classifier_<dataset>/classifier.safetensors
    int epochs = 30;
    std::int64_t iters = 0;  // 0: epochs · batches per epoch
    Index batch = 64;
    double lr = 2e-4;
    std::uint64_t seed = 0;
    int threads = 0;  // 0: the machine's hardware threads, shared among the ranks on it
    Index n_samples = 1000;
    bool resume = false, quick = false;
};

// Pixels in [-1, 1] as the generator's Tanh produces them -> [0, 1] for pictures and files.

// This process's part in the run: the whole of it, or one rank of an MPI job. Everything
// the training loop needs from MPI goes through here, so without EMBER_WITH_MPI the loop is
// the plain single-process one.
struct World {
#ifdef EMBER_WITH_MPI
    ember::dist::Communicator* comm = nullptr;
#endif
    int rank = 0, size = 1, on_node = 1;
    double comm_seconds = 0;  // wall time inside MPI calls (including waits for other ranks)

    bool root() const { return rank == 0; }
    void broadcast_parameters([[maybe_unused]] ember::nn::Module<float>& m) {
#ifdef EMBER_WITH_MPI
        if (size > 1) timed([&] { ember::dist::broadcast_parameters(*comm, m); });
#endif
    }
    void average_gradients([[maybe_unused]] ember::nn::Module<float>& m) {
#ifdef EMBER_WITH_MPI
        if (size > 1) timed([&] { ember::dist::allreduce_gradients(*comm, m); });
#endif
    }
    // The means over the ranks of one step's losses: the losses on the global batch.
    ember_examples::GanLosses mean(ember_examples::GanLosses l) {
#ifdef EMBER_WITH_MPI
        if (size > 1)
            timed([&] {
                const auto v = ember::dist::allreduce(*comm, {l.d, l.g, l.d_real, l.d_fake}, ember::dist::Op::mean);
                l = {static_cast<float>(v[0]), static_cast<float>(v[1]), static_cast<float>(v[2]), static_cast<float>(v[3])};
            });
#endif
        return l;
    }
    template <class F>
    void timed(F&& f) {
        const auto t = std::chrono::steady_clock::now();
        f();
        comm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    }
};

int run(const Options& opts, World& world) {
    Options o = opts;
    if (o.threads == 0) o.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world.on_node);
    ember::set_num_threads(o.threads);
    const auto t0 = std::chrono::steady_clock::now();
    if (world.root()) fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: training images, flattened, scaled to [-1, 1] ---------------------------
    const auto which = o.dataset == "fashion" ? ember::Dataset::fashion_mnist : ember::Dataset::mnist;
    const ember::ImageSet train = ember::load_image_set(ember::find_dataset(which, o.data), true);
    const Index N = train.images.dim(0);
    const Tensor<float> images = ember::scale_to_symmetric(train.images).reshape(ember::Shape{N, 784});
    // Each rank gets its shard (rows [r·b, (r+1)·b), b = batch / ranks) of the batch one
    // process would see at that step.
    const ember::BatchIterator<float>::Options batching{.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed};
#ifdef EMBER_WITH_MPI
    ember::dist::ShardedBatchIterator<float> batches(world.rank, world.size, images, batching);
#else
    ember::BatchIterator<float> batches(images, batching);
#endif
    const Index local = o.batch / world.size;
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch;

    // ---- model, noise and what a checkpoint holds ---------------------------------------
    ember::Generator init(o.seed);
    ember_examples::MlpGan gan(init, {.lr = o.lr});
    // Rank 0's initialisation everywhere (all ranks drew the same already, from the same
    // seed; the broadcast makes that a guarantee), and gradients averaged before each step.
    world.broadcast_parameters(gan.G);
    world.broadcast_parameters(gan.D);
    gan.before_update = [&](ember::nn::Module<float>& m) { world.average_gradients(m); };
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
        ckpt.load(ckpt_path);  // every rank reads the same file (shared file system)
        if (world.root()) std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
        std::fflush(stdout);
    }
    if (world.size > 1 && world.root())
        std::printf("gan_mlp_mnist: data parallel over %d processes, local batch %lld\n", world.size,
                    static_cast<long long>(local));
    if (world.root()) {
        std::printf("gan_mlp_mnist: %s, %lld images; G %lld and D %lld parameters; batch %lld, lr %g, %lld steps "
                    "(%lld per epoch), seed %llu, %d threads\n",
                    o.dataset.c_str(), static_cast<long long>(N), static_cast<long long>(gan.G.parameter_count()),
                    static_cast<long long>(gan.D.parameter_count()), static_cast<long long>(o.batch), o.lr,
                    static_cast<long long>(total), static_cast<long long>(per_epoch), static_cast<unsigned long long>(o.seed),
                    o.threads);
    }
    std::fflush(stdout);  // before the progress line, which goes to stderr

    const std::map<std::string, std::string> about{{"example", "gan_mlp_mnist"}, {"dataset", o.dataset}};
    auto save_pictures = [&] {
        ember::save_image_grid(out / "samples.png", ember::symmetric_to_unit(gan.sample(z_fixed)).reshape(ember::Shape{100, 1, 28, 28}),
                               10, 0.0, 1.0);
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"loss_d", "loss_g"});
    };

    // ---- training (rank 0 alone writes the metrics, progress line and files) ----------------
    std::optional<ember::MetricsLog> metrics;
    std::optional<ember::Progress> progress;
    if (world.root()) {
        metrics.emplace(out / "metrics.csv", step);
        progress.emplace(total, ember::ProgressOptions{.label = "gan_mlp_mnist", .start_step = step, .every_steps = 1000});
    }
    const std::int64_t log_every = 50;
    ember_examples::GanLosses window, logged;  // sums over the current window; the last window's means
    int in_window = 0;
    // ShardedBatchIterator (MPI builds) has no seek/next_wrapping, so the wrap is written out.
    batches.start_epoch(static_cast<std::uint64_t>(step / per_epoch), step % per_epoch);
    const std::int64_t first_step = step;
    const auto t_loop = std::chrono::steady_clock::now();
    while (step < total) {
        auto batch = batches.next();
        if (!batch) {
            batches.start_epoch(batches.epoch() + 1);
            batch = batches.next();
        }
        // The global batch's noise, drawn alike on every rank; this rank uses its rows.
        const Tensor<float> z_all = ember::normal<float>(ember::Shape{o.batch, 64}, noise);
        const Tensor<float> z = world.size > 1 ? z_all.slice(0, world.rank * local, (world.rank + 1) * local).contiguous() : z_all;
        const ember_examples::GanLosses l = world.mean(gan.step(batch->x, z));
        ++step;
        window.d += l.d, window.g += l.g, window.d_real += l.d_real, window.d_fake += l.d_fake;
        ++in_window;
        if (progress) progress->update(step, {{"loss_d", l.d}, {"loss_g", l.g}});
        if (step % log_every == 0 || step == total) {
            const float k = static_cast<float>(in_window);
            logged = {window.d / k, window.g / k, window.d_real / k, window.d_fake / k};
            if (metrics) metrics->write(step, {{"epoch", static_cast<double>(step) / static_cast<double>(per_epoch)},
                                 {"loss_d", logged.d},
                                 {"loss_g", logged.g},
                                 {"d_real", logged.d_real},
                                 {"d_fake", logged.d_fake}});
            window = {};
            in_window = 0;
        }
        if ((step % per_epoch == 0 || step == total) && world.root()) {
            ckpt.save(ckpt_path, about);
            save_pictures();
        }
    }
    if (progress) progress->finish();
    const double loop_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_loop).count();
    if (!world.root()) return 0;

    // ---- samples for evaluation ------------------------------------------------------------
    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> z = ember::normal<float>(ember::Shape{o.n_samples, 64}, sample_noise);
    const Tensor<float> samples01 = ember::symmetric_to_unit(gan.sample(z)).reshape(ember::Shape{o.n_samples, 1, 28, 28});
    ember::save_npy(out / "samples.npy", samples01);

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("gan_mlp_mnist: %lld steps in %.1f s; last logged window: loss_d %.3f, loss_g %.3f, D(x) %.3f, "
                "D(G(z)) %.3f; wrote %s/{samples.png, samples.npy, metrics.csv, loss.png, checkpoint.safetensors}\n",
                static_cast<long long>(step), seconds, logged.d, logged.g, logged.d_real, logged.d_fake, o.out.c_str());
#ifdef EMBER_WITH_MPI
    // Throughput of the training loop alone (no data loading, pictures or samples), for
    // comparing process counts (docs/distributed.md). Builds without MPI print as before.
    const double steps_run = static_cast<double>(step - first_step);
    if (steps_run > 0)
        std::printf("gan_mlp_mnist: throughput %.1f steps/s (%.0f images/s) with %d process(es) x %d thread(s); "
                    "rank 0 spent %.1f%% of the loop in MPI calls\n",
                    steps_run / loop_seconds, steps_run * static_cast<double>(o.batch) / loop_seconds, world.size,
                    o.threads, 100.0 * world.comm_seconds / loop_seconds);
#else
    (void)loop_seconds, (void)first_step;
#endif
    // The classifier's verdict on the samples (common/quality.hpp), if the classifier
    // checkpoint (--classifier) exists.
    ember_examples::ExampleOptions q;
    q.name = "gan_mlp_mnist", q.data = o.data, q.dataset = o.dataset, q.out = o.out;
    q.classifier = o.classifier;
    ember_examples::report_sample_quality(q, samples01);
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
    app.add_option("--threads", o.threads,
                   "threads for ember's kernels and GEMM (default: the hardware threads, divided among the MPI "
                   "processes on this machine)")
        ->check(CLI::PositiveNumber);
    app.add_option("--n-samples", o.n_samples, "images written to samples.npy")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--classifier", o.classifier,
                   "classifier checkpoint from classifier_mnist, for the quality numbers at the end "
                   "(default: out/classifier_<dataset>/classifier.safetensors)");
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
#ifdef EMBER_WITH_MPI
    // Any rank's exception ends the whole job with "rank R: <message>" (no rank is left
    // waiting in a collective).
    return ember::dist::run(argc, argv, [&](ember::dist::Communicator& comm) {
        World world{&comm, comm.rank(), comm.size(), comm.ranks_on_node()};
        if (o.batch % world.size != 0)
            throw ember::Error("gan_mlp_mnist: --batch " + std::to_string(o.batch) + " must be divisible by the " +
                               std::to_string(world.size) + " processes");
        return run(o, world);
    });
#else
    try {
        World world;
        return run(o, world);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gan_mlp_mnist: %s\n", e.what());
        return 1;
    }
#endif
}
