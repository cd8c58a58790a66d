// Training steps of whole models, matching the model workloads of bench/torch_bench.py
// (bench/compare runs both side by side). Threads: ember::set_num_threads(2) unless
// EMBER_THREADS says otherwise.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <ember/ember.hpp>

#include "../examples/common/mlp_gan.hpp"

using namespace ember;

namespace {

int threads() {
    const char* env = std::getenv("EMBER_THREADS");
    return env ? std::atoi(env) : 2;
}

// examples/gan_mlp_mnist's training step (one D step on real+fake, one G step), batch 64.
void BM_GanMlpStep(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    ember_examples::MlpGan gan(g);
    const Tensor<float> real = uniform<float>(Shape{64, 784}, g, -1.0f, 1.0f);
    Generator noise(2);
    for (auto _ : st) {
        const Tensor<float> z = normal<float>(Shape{64, 64}, noise);
        benchmark::DoNotOptimize(gan.step(real, z).g);
    }
}

}  // namespace

BENCHMARK(BM_GanMlpStep)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
