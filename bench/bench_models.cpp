// Training and sampling steps of whole models, matching the model workloads of bench/torch_bench.py
// (bench/compare runs both side by side). Threads: ember::set_num_threads(2) unless
// EMBER_THREADS says otherwise.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <ember/ember.hpp>

// The examples without their main: their train_step functions, timed by BM_GanMlpStep and
// BM_EbganStep (gan_mlp_mnist.cpp also brings common/mlp_gan.hpp, the nets of the latent samplers).
#define EMBER_EXAMPLE_STEP_ONLY
#include "../examples/ebgan_mnist.cpp"
#include "../examples/gan_mlp_mnist.cpp"

using namespace ember;

namespace {

int threads() {
    const char* env = std::getenv("EMBER_THREADS");
    return env ? std::atoi(env) : 2;
}

// examples/gan_mlp_mnist's train_step (one D step on real+fake, one G step), batch 64.
void BM_GanMlpStep(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    ember_examples::MlpGan gan(g);
    const Tensor<float> real = uniform<float>(Shape{64, 784}, g, -1.0f, 1.0f);
    Generator noise(2);
    for (auto _ : st) {
        const Tensor<float> z = normal<float>(Shape{64, 64}, noise);
        benchmark::DoNotOptimize(ember_examples::train_step(gan, real, z).g);
    }
}

// Latent-space sampling through the GAN's nets (the MEG picture; Kumar et al. 2019, §4): chains in z
// (batch 64, latent 64) on U_z(z) = -D(G(z)) + ½||z||². One step = one energy-and-gradient
// evaluation through G and D (the gradient at the current state is kept from the last
// step) plus the proposal; MALA adds the accept test. The chains are split into one group
// per thread, each group with its own graph (parallel_chains: the nets are only read).
// The ConstantWeights scope keeps the weights' packing across the run(1) calls, as one
// long run() does: the time is that of a step in the middle of a sampling run.
template <class Sampler>
void latent_step(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    ember_examples::MlpGan gan(g);
    gan.G.eval();
    gan.D.eval();
    const auto critic = [&](const Var<float>& x) { return Var<float>(-gan.D(x)); };
    const auto uz = sample::latent_energy<float>(std::ref(gan.G), critic);
    Sampler s(uz, normal<float>(Shape{64, 64}, g), {.step_size = 0.01, .seed = 3, .parallel_chains = true});
    const ConstantWeights constant;
    for (auto _ : st) benchmark::DoNotOptimize(s.run(1).mean_energy);
}
void BM_LatentLangevinStep(benchmark::State& st) { latent_step<sample::Langevin<float>>(st); }
void BM_LatentMalaStep(benchmark::State& st) { latent_step<sample::Mala<float>>(st); }

// Data-space SGLD as in EBM training (IGEBM/JEM): 64 images 1x28x28 in [0, 1], a small conv
// energy (conv 1->32 and 32->64, 3x3 stride 2, LeakyReLU, linear to one energy); one step
// x <- clamp(x - α∇U(x) + σξ, 0, 1).
void BM_SgldConvStep(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    nn::Sequential<float> E;
    const nn::Conv2dOptions down{.stride = 2, .padding = 1, .activation = ConvActivation::leaky_relu(0.2)};
    E.add<nn::Conv2d>(1, 32, 3, g, down);
    E.add<nn::Conv2d>(32, 64, 3, g, down);
    E.add<nn::Flatten>();
    E.add<nn::Linear>(64 * 7 * 7, 1, g);
    const sample::EnergyFn<float> energy = std::ref(E);
    Tensor<float> x = uniform<float>(Shape{64, 1, 28, 28}, g);
    const sample::SgldOptions o{
        .step_size = 1.0, .noise = 0.01, .steps = 1, .clamp_min = 0, .clamp_max = 1, .parallel_chains = true};
    for (auto _ : st) {
        x = sample::sgld(energy, x, o, g);
        benchmark::DoNotOptimize(x.data());
    }
}

// examples/ebgan_mnist's training step (common/ebgan_nets.hpp): conv auto-encoder energy and
// conv generator as in PyTorch-GAN's EBGAN, one D step on a real and a generated batch, one
// G step with the pulling-away term, batch 64; 12.7 GFLOP.
void BM_EbganStep(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    ember_examples::Ebgan gan(g);
    const Tensor<float> real = uniform<float>(Shape{64, 1, 28, 28}, g, -1.0f, 1.0f);
    Generator noise(2);
    ember_examples::train_step(gan, real, normal<float>(Shape{64, 62}, noise));  // warm-up: allocator, thread pool
    for (auto _ : st) {
        const Tensor<float> z = normal<float>(Shape{64, 62}, noise);
        benchmark::DoNotOptimize(ember_examples::train_step(gan, real, z).g);
    }
}

}  // namespace

BENCHMARK(BM_GanMlpStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LatentLangevinStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LatentMalaStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_SgldConvStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_EbganStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
