// The reference for ember's matrix products: the same three products forward and backward
// (C = AB, dA = G Bᵀ, dB = Aᵀ G) in plain Eigen, threaded Eigen's own way (OpenMP, when
// CMake finds it). ember's matmul runs Eigen's GEMM on blocks of C spread over its own
// thread pool; bench/compare shows both side by side. Threads: EMBER_THREADS, 2 by default.
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cstdlib>
#include <string>

#include "gemm_shapes.hpp"

namespace {

int threads() {
    const char* env = std::getenv("EMBER_THREADS");
    return env ? std::atoi(env) : 2;
}

void BM_EigenMatmulForwardBackward(benchmark::State& st) {
    Eigen::setNbThreads(threads());
    const auto [M, K, N] = kGemmShapes[static_cast<std::size_t>(st.range(0))];
    using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Mat A = Mat::Random(M, K), B = Mat::Random(K, N), G = Mat::Random(M, N);
    Mat C(M, N), dA(M, K), dB(K, N);  // allocated once, as ember's buffer pool would reuse them
    for (auto _ : st) {
        C.noalias() = A * B;
        dA.noalias() = G * B.transpose();
        dB.noalias() = A.transpose() * G;
        benchmark::DoNotOptimize(C.data());
        benchmark::DoNotOptimize(dA.data());
        benchmark::DoNotOptimize(dB.data());
    }
    st.counters["GFLOP/s"] =
        benchmark::Counter(3.0 * 2 * static_cast<double>(M * K * N) * static_cast<double>(st.iterations()) / 1e9,
                           benchmark::Counter::kIsRate);
    st.counters["threads"] = Eigen::nbThreads();
    st.SetLabel(std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N));
}

}  // namespace

BENCHMARK(BM_EigenMatmulForwardBackward)->DenseRange(0, 2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
