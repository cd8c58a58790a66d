// Benchmarks of the core, matching bench/torch_bench.py workload for workload so that
// bench/compare runs both side by side. Threads: ember::set_num_threads(2) unless
// EMBER_THREADS says otherwise.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cstdint>
#include <cstdlib>
#include <vector>
#include <ember/ember.hpp>

#include "gemm_shapes.hpp"
#include <ember/core/simd.hpp>

using namespace ember;

namespace {

constexpr Index kChain = Index{1} << 22;  // 4M floats

int threads() {
    const char* env = std::getenv("EMBER_THREADS");
    return env ? std::atoi(env) : 2;
}

template <class X>
auto chain(const X& a, const X& x, const X& b) {
    return softplus(a * x + b) * sigmoid(x) - log1p(exp(-abs(x)));
}

// softplus(a*x+b)*sigmoid(x) - log1p(exp(-|x|)) on 4M floats: one fused pass.
void BM_ChainForward(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    Tensor<float> a = normal<float>({kChain}, g), x = normal<float>({kChain}, g), b = normal<float>({kChain}, g);
    for (auto _ : st) {
        Tensor<float> y = chain(a, x, b);
        benchmark::DoNotOptimize(y.data());
    }
    st.counters["GB/s"] = benchmark::Counter(4.0 * 4 * kChain * static_cast<double>(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// Forward + backward with a, x, b all requiring grad: one node, one fused backward pass.
void BM_ChainForwardBackward(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    Var<float> a(normal<float>({kChain}, g), true), x(normal<float>({kChain}, g), true), b(normal<float>({kChain}, g), true);
    const Tensor<float> seed = Tensor<float>::ones({kChain});
    for (auto _ : st) {
        Var<float> y = chain(a, x, b);
        backward(y, seed);
        benchmark::DoNotOptimize(x.grad().data());
        a.zero_grad(), x.zero_grad(), b.zero_grad();
    }
    // forward reads 3 + writes 1; backward reads 3 + seed, writes 3 gradients
    st.counters["GB/s"] = benchmark::Counter(11.0 * 4 * kChain * static_cast<double>(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// STREAM triad a = b + s*c through an expression: the memory-bandwidth reference.
void BM_Triad(benchmark::State& st) {
    set_num_threads(threads());
    const Index n = Index{1} << 26;
    Tensor<float> b = Tensor<float>::full({n}, 1.f), c = Tensor<float>::full({n}, 2.f);
    for (auto _ : st) {
        Tensor<float> a = b + 3.0f * c;
        benchmark::DoNotOptimize(a.data());
    }
    st.counters["GB/s"] = benchmark::Counter(3.0 * 4 * n * static_cast<double>(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

// The memory bandwidth: the STREAM triad a = b + 3c over 64M floats per array (768 MB moved
// per pass, far beyond any cache), written with explicit SIMD loads and stores so that the
// arithmetic never limits it; the limit BM_Triad and the other memory-bound workloads are
// measured against (bench/compare).
void BM_MemoryBandwidth(benchmark::State& st) {
    using B = xsimd::batch<float>;
    const std::int64_t n = std::int64_t{1} << 26, lanes = B::size;
    const int n_threads = threads();
    std::vector<float> a(n), b(n, 1.f), c(n, 2.f);
    float *pa = a.data();
    const float *pb = b.data(), *pc = c.data();
    set_num_threads(n_threads);
    const std::int64_t part = (n / n_threads + lanes - 1) / lanes * lanes;  // one slice per thread
    for (auto _ : st) {
        parallel_tasks(n_threads, [&](int t) {
            for (std::int64_t i = t * part; i < std::min(n, (t + 1) * part); i += lanes)
                (B::load_unaligned(pb + i) + B(3.0f) * B::load_unaligned(pc + i)).store_unaligned(pa + i);
        });
        benchmark::DoNotOptimize(pa);
        benchmark::ClobberMemory();
    }
    st.counters["GB/s"] = benchmark::Counter(3.0 * 4 * n * static_cast<double>(st.iterations()) / 1e9,
                                             benchmark::Counter::kIsRate);
}

// The single-precision FMA peak of the threads used: each thread runs 12 independent chains
// of fused multiply-adds on SIMD registers (more than the FMA latency times the FMA units,
// so the units never wait), which is the limit no kernel can pass. bench/compare's
// --peak-gflops takes this number; it measures the clock the cores really run at under
// load, which can be far from the nominal one.
void BM_FmaPeak(benchmark::State& st) {
    using B = xsimd::batch<float>;
    constexpr int kChains = 12;
    constexpr std::int64_t kRounds = 1 << 20;
    const int n_threads = threads();
    set_num_threads(n_threads);
    std::vector<float> sinks(static_cast<std::size_t>(n_threads));
    for (auto _ : st) {
        parallel_tasks(n_threads, [&](int t) {
            B acc[kChains];
            for (int j = 0; j < kChains; ++j) acc[j] = B(1.0f + 1e-3f * static_cast<float>(j));
            const B m(0.999999f), a(1e-7f);
            for (std::int64_t r = 0; r < kRounds; ++r)
                for (int j = 0; j < kChains; ++j) acc[j] = xsimd::fma(acc[j], m, a);
            float sink = 0;
            for (int j = 0; j < kChains; ++j) sink += xsimd::hadd(acc[j]);
            sinks[static_cast<std::size_t>(t)] = sink;
        });
        benchmark::DoNotOptimize(sinks.data());
    }
    const double flops = 2.0 * B::size * kChains * static_cast<double>(kRounds) * n_threads;
    st.counters["GFLOP/s"] = benchmark::Counter(flops * static_cast<double>(st.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

// The noise of one SGLD step on 64 MNIST images: 64 x 784 standard normal floats.
void BM_NormalDraws(benchmark::State& st) {
    set_num_threads(threads());
    Generator g(1);
    for (auto _ : st) {
        Tensor<float> xi = normal<float>(Shape{64, 784}, g);
        benchmark::DoNotOptimize(xi.data());
    }
}


// matmul forward + backward: C = AB, dA = G Bᵀ, dB = Aᵀ G.
void BM_MatmulForwardBackward(benchmark::State& st) {
    set_num_threads(threads());
    const auto [M, K, N] = kGemmShapes[static_cast<std::size_t>(st.range(0))];
    Generator g(2);
    Var<float> A(normal<float>({M, K}, g), true), B(normal<float>({K, N}, g), true);
    const Tensor<float> G = normal<float>({M, N}, g);
    for (auto _ : st) {
        Var<float> C = matmul(A, B);
        backward(C, G);
        benchmark::DoNotOptimize(A.grad().data());
        A.zero_grad(), B.zero_grad();
    }
    st.counters["GFLOP/s"] = benchmark::Counter(3.0 * 2 * M * K * N * static_cast<double>(st.iterations()) / 1e9, benchmark::Counter::kIsRate);
    st.SetLabel(std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N));
}

// conv2d forward + backward (input gradient included, as inside a network).
void BM_Conv2dForwardBackward(benchmark::State& st) {
    set_num_threads(threads());
    const bool second = st.range(0) == 1;
    const Shape xs = second ? Shape{64, 64, 14, 14} : Shape{64, 1, 28, 28};
    const Shape ws = second ? Shape{128, 64, 3, 3} : Shape{64, 1, 3, 3};
    Generator g(3);
    Var<float> x(normal<float>(xs, g), true), w(normal<float>(ws, g), true), b(normal<float>({ws[0]}, g), true);
    Tensor<float> G;
    for (auto _ : st) {
        Var<float> y = conv2d(x, w, b, {2, 1, 1});
        if (!G.defined()) G = Tensor<float>::ones(y.shape());
        backward(y, G);
        benchmark::DoNotOptimize(w.grad().data());
        x.zero_grad(), w.zero_grad(), b.zero_grad();
    }
    st.SetLabel(xs.str() + "*" + ws.str());
}

// Autodiff bookkeeping: a chain of scalar ops, recorded then differentiated.
void BM_ScalarChainRecord(benchmark::State& st) {
    const Index n = st.range(0);
    Var<float> x(Tensor<float>::scalar(1.f), true);
    for (auto _ : st) {
        Var<float> y = x;
        for (Index i = 0; i < n; ++i) y = Var<float>(y * 1.0001f);
        benchmark::DoNotOptimize(y.impl().get());
    }
    st.counters["ns/node"] = benchmark::Counter(static_cast<double>(n * st.iterations()), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_ScalarChainRecordAndBackward(benchmark::State& st) {
    const Index n = st.range(0);
    Var<float> x(Tensor<float>::scalar(1.f), true);
    for (auto _ : st) {
        Var<float> y = x;
        for (Index i = 0; i < n; ++i) y = Var<float>(y * 1.0001f);
        y.backward();
        x.zero_grad();
    }
    st.counters["ns/node"] = benchmark::Counter(static_cast<double>(n * st.iterations()), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

BENCHMARK(BM_ChainForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ChainForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Triad)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FmaPeak)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MemoryBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_NormalDraws)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MatmulForwardBackward)->DenseRange(0, 2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Conv2dForwardBackward)->DenseRange(0, 1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ScalarChainRecord)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ScalarChainRecordAndBackward)->Arg(10000)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
