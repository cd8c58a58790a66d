#pragma once
// Seeded, reproducible random numbers. Draws come from the counter-based Philox4x32-10
// generator: element i of a draw depends only on (seed, counter + i), so tensors are
// identical on every run and for every thread count.
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "ember/core/tensor.hpp"
#include "ember/core/threading.hpp"

namespace ember {

namespace detail {
// Philox4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
inline std::array<std::uint32_t, 4> philox(std::uint64_t counter, std::uint64_t key) {
    std::uint32_t c0 = static_cast<std::uint32_t>(counter), c1 = static_cast<std::uint32_t>(counter >> 32);
    std::uint32_t c2 = 0x9E3779B9u, c3 = 0x85EBCA6Bu;  // fixed high words
    std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
        const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * c0, p1 = std::uint64_t{0xCD9E8D57u} * c2;
        const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
        const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
        c1 = static_cast<std::uint32_t>(p1);
        c3 = static_cast<std::uint32_t>(p0);
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return {c0, c1, c2, c3};
}
// Uniform in (0, 1) from 53 random bits: never exactly 0, so log() is safe.
inline double unit_open(std::uint32_t hi, std::uint32_t lo) {
    const std::uint64_t bits = (std::uint64_t{hi} << 21) ^ (lo >> 11);  // 53 bits
    return (static_cast<double>(bits & ((std::uint64_t{1} << 53) - 1)) + 0.5) * 0x1.0p-53;
}
}  // namespace detail

// A stream of random numbers; each draw advances the counter by the number of blocks used.
class Generator {
public:
    explicit Generator(std::uint64_t seed = 0) : seed_(seed) {}
    std::uint64_t seed() const { return seed_; }
    std::uint64_t offset() const { return offset_; }
    void set_offset(std::uint64_t o) { offset_ = o; }

    // Two uniforms in (0,1) per Philox block; `fill(i, u0, u1)` receives block i.
    template <class Fill>
    void blocks(std::int64_t count, Fill&& fill) {
        const std::uint64_t base = offset_;
        parallel_chunks(count, 1 << 14, 1, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t i = b; i < e; ++i) {
                auto r = detail::philox(base + static_cast<std::uint64_t>(i), seed_);
                fill(i, detail::unit_open(r[0], r[1]), detail::unit_open(r[2], r[3]));
            }
        });
        offset_ += static_cast<std::uint64_t>(count);
    }
    double uniform01() {
        double out = 0;
        blocks(1, [&](std::int64_t, double u, double) { out = u; });
        return out;
    }
    // Uniform integer in [0, n).
    std::int64_t randint(std::int64_t n) {
        EMBER_CHECK(n > 0, "randint", "upper bound must be positive, got ", n);
        return std::min<std::int64_t>(n - 1, static_cast<std::int64_t>(uniform01() * static_cast<double>(n)));
    }

private:
    std::uint64_t seed_;
    std::uint64_t offset_ = 0;
};

template <Real T>
Tensor<T> uniform(const Shape& shape, Generator& gen, T lo = T(0), T hi = T(1)) {
    Tensor<T> t = Tensor<T>::empty(shape);
    T* p = t.data();
    const std::int64_t n = shape.numel();
    gen.blocks((n + 1) / 2, [&](std::int64_t i, double u0, double u1) {
        p[2 * i] = static_cast<T>(lo + (hi - lo) * u0);
        if (2 * i + 1 < n) p[2 * i + 1] = static_cast<T>(lo + (hi - lo) * u1);
    });
    return t;
}

// Normal(mean, std) by the Box-Muller transform of each block's two uniforms.
template <Real T>
Tensor<T> normal(const Shape& shape, Generator& gen, T mean = T(0), T std = T(1)) {
    Tensor<T> t = Tensor<T>::empty(shape);
    T* p = t.data();
    const std::int64_t n = shape.numel();
    gen.blocks((n + 1) / 2, [&](std::int64_t i, double u0, double u1) {
        const double r = std::sqrt(-2.0 * std::log(u0)), a = 2.0 * std::numbers::pi * u1;
        p[2 * i] = static_cast<T>(mean + std * r * std::cos(a));
        if (2 * i + 1 < n) p[2 * i + 1] = static_cast<T>(mean + std * r * std::sin(a));
    });
    return t;
}

// 1 with probability p, else 0.
template <Real T>
Tensor<T> bernoulli(const Shape& shape, Generator& gen, double p) {
    EMBER_CHECK(p >= 0 && p <= 1, "bernoulli", "probability must be in [0,1], got ", p);
    Tensor<T> u = uniform<T>(shape, gen);
    T* d = u.data();
    for (Index i = 0; i < u.numel(); ++i) d[i] = d[i] < static_cast<T>(p) ? T(1) : T(0);
    return u;
}

// A uniformly random permutation of 0..n-1 (Fisher-Yates driven by one block of draws).
inline std::vector<std::int64_t> permutation(std::int64_t n, Generator& gen) {
    std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
    std::vector<double> u(static_cast<std::size_t>(n));
    gen.blocks(n, [&](std::int64_t i, double u0, double) { u[static_cast<std::size_t>(i)] = u0; });
    for (std::int64_t i = n - 1; i > 0; --i) {
        auto j = std::min<std::int64_t>(i, static_cast<std::int64_t>(u[static_cast<std::size_t>(i)] * static_cast<double>(i + 1)));
        std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
    }
    return perm;
}

}  // namespace ember
