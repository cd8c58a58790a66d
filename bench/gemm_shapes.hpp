// The (M, K, N) shapes of the matrix-product benchmarks (bench_core.cpp, bench_eigen.cpp,
// and torch_bench.py's twins): a 64-row batch through a 784-input layer, a 256-row one, and
// a square product.
#pragma once
#include <array>
#include <cstdint>

inline constexpr std::array<std::array<std::int64_t, 3>, 3> kGemmShapes = {
    {{64, 784, 512}, {256, 784, 1024}, {1024, 1024, 1024}}};
