#pragma once
// The networks of examples/gan_mlp_mnist.cpp (Goodfellow et al. 2014), whose train_step
// bench/bench_models.cpp times (the benchmark's latent-space samplers also run through
// them), and the example's data parallelism over MPI (World, below).
//
//   G: z (64) -> 256 -> 512 -> 784, ReLU between layers, Tanh at the end (images in [-1, 1])
//   D: x (784) -> 512 -> 256 -> 1 logit, LeakyReLU(0.2) between layers
//   both trained by Adam(lr 2e-4, betas 0.5 / 0.999), PyTorch's default initialisation.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ember/ember.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#ifdef EMBER_WITH_MPI  // defined by the CMake target ember::dist
#include <ember/dist/dist.hpp>
#endif

namespace ember_examples {

struct MlpGanOptions {
    ember::Index latent = 64;
    ember::Index image = 784;
    double lr = 2e-4;
    double beta1 = 0.5, beta2 = 0.999;
};

class MlpGan {
public:
    using Tensor = ember::Tensor<float>;

    MlpGan(ember::Generator& init, MlpGanOptions o = {}) {
        namespace nn = ember::nn;
        G.add<nn::Linear>(o.latent, 256, init);
        G.add<nn::ReLU>();
        G.add<nn::Linear>(256, 512, init);
        G.add<nn::ReLU>();
        G.add<nn::Linear>(512, o.image, init);
        G.add<nn::Tanh>();
        D.add<nn::Linear>(o.image, 512, init);
        D.add<nn::LeakyReLU>(0.2);
        D.add<nn::Linear>(512, 256, init);
        D.add<nn::LeakyReLU>(0.2);
        D.add<nn::Linear>(256, 1, init);
        const ember::AdamOptions adam{.lr = o.lr, .betas = {o.beta1, o.beta2}};
        opt_G = std::make_unique<ember::Adam<float>>(G.parameters(), adam);
        opt_D = std::make_unique<ember::Adam<float>>(D.parameters(), adam);
    }

    // s [2B, 1]: +1 for the B real rows and -1 for the B generated rows of D's batch [x; G(z)].
    const Tensor& real_fake_signs(ember::Index B) {
        if (signs_.shape() != ember::Shape{2 * B, 1}) {
            signs_ = Tensor::full(ember::Shape{2 * B, 1}, 1.0f);
            for (ember::Index i = B; i < 2 * B; ++i) signs_.data()[i] = -1.0f;
        }
        return signs_;
    }

    // Images from noise z [N, latent] as [N,1,28,28] in [0, 1], without a graph.
    Tensor sample01(const Tensor& z) {
        return ember::symmetric_to_unit(G.infer(z)).reshape(ember::Shape{z.dim(0), 1, 28, 28});
    }

    ember::nn::Sequential<float> G, D;
    std::unique_ptr<ember::Adam<float>> opt_G, opt_D;

private:
    Tensor signs_;
};

// This process's part in a training run: all of it, or one rank of an MPI job when built
// with ember::dist (docs/distributed.md). Without MPI every call is the single-process one.
struct World {
    int rank = 0, size = 1, on_node = 1;
    double comm_seconds = 0;  // wall time in MPI calls, waits for the other ranks included
    bool root() const { return rank == 0; }

    // Runs body(world): under MPI inside dist::run, where any rank's exception ends the whole
    // job with "rank R: <message>" (no rank is left waiting in a collective).
    template <class Body>
    static int run(int& argc, char**& argv, Body&& body) {
#ifdef EMBER_WITH_MPI
        return ember::dist::run(argc, argv, [&](ember::dist::Communicator& c) {
            World world{c.rank(), c.size(), c.ranks_on_node(), 0, &c};
            return body(world);
        });
#else
        (void)argc, (void)argv;
        World world;
        return body(world);
#endif
    }

    // --threads 0: the machine's hardware threads, divided among the ranks on it.
    int threads(int requested) const {
        return requested > 0 ? requested : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / on_node);
    }
    // The batches of `data` one process would see; under MPI this rank's shard of each, rows
    // [r·b, (r+1)·b) with b = batch / ranks.
    auto batches(const ember::Tensor<float>& data, const ember::BatchIterator<float>::Options& o) const {
#ifdef EMBER_WITH_MPI
        return ember::dist::ShardedBatchIterator<float>(rank, size, data, o);
#else
        return ember::BatchIterator<float>(data, o);
#endif
    }
    // This rank's rows of a global batch (noise drawn alike on every rank).
    ember::Tensor<float> shard(const ember::Tensor<float>& all) const {
        const ember::Index b = all.dim(0) / size;
        return size == 1 ? all : all.slice(0, rank * b, (rank + 1) * b).contiguous();
    }
    // Rank 0's parameters everywhere.
    void broadcast([[maybe_unused]] ember::nn::Module<float>& m) {
#ifdef EMBER_WITH_MPI
        timed([&] { ember::dist::broadcast_parameters(*comm, m); });
#endif
    }
    // The gradients averaged over the ranks: those of the global batch.
    void average_gradients([[maybe_unused]] ember::nn::Module<float>& m) {
#ifdef EMBER_WITH_MPI
        timed([&] { ember::dist::allreduce_gradients(*comm, m); });
#endif
    }
    // The means of `values` over the ranks, in place: a step's losses on the global batch.
    template <class... F>
    void mean([[maybe_unused]] F&... values) {
#ifdef EMBER_WITH_MPI
        timed([&] {
            const std::vector<double> v = ember::dist::allreduce(*comm, {static_cast<double>(values)...}, ember::dist::Op::mean);
            std::size_t i = 0;
            ((values = static_cast<F>(v[i++])), ...);
        });
#endif
    }
    // Under MPI, the throughput of a training loop of `steps` steps of `batch` images, for
    // comparing process counts; nothing without MPI.
    void report_throughput([[maybe_unused]] const std::string& name, [[maybe_unused]] double steps,
                           [[maybe_unused]] double batch, [[maybe_unused]] double seconds,
                           [[maybe_unused]] int threads) const {
#ifdef EMBER_WITH_MPI
        if (root() && steps > 0)
            std::printf("%s: throughput %.1f steps/s (%.0f images/s) with %d process(es) x %d thread(s); rank 0 spent "
                        "%.1f%% of the loop in MPI calls\n",
                        name.c_str(), steps / seconds, steps * batch / seconds, size, threads,
                        100.0 * comm_seconds / seconds);
#endif
    }

#ifdef EMBER_WITH_MPI
    ember::dist::Communicator* comm = nullptr;

private:
    template <class F>
    void timed(F&& f) {
        if (size == 1) return;
        const auto t = std::chrono::steady_clock::now();
        f();
        comm_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    }
#endif
};

}  // namespace ember_examples
