#pragma once
/// \file
/// Seeded, reproducible random numbers. Draws come from the counter-based Philox4x32-10
/// generator: element i of a draw depends only on (seed, counter + i), so tensors are
/// identical on every run and for every thread count.
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "ember/core/simd.hpp"
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "ember/core/instances.hpp"
#include "ember/core/tensor.hpp"
#include "ember/core/threading.hpp"

namespace ember {

namespace detail {
// Philox4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"),
// for kRandomLanes consecutive counters at once. The lanes are plain loops over arrays,
// marked for the compiler's loop vectoriser (32x32 -> 64-bit products and all): fully
// unrolled instead, a round would stay scalar.
inline constexpr int kRandomLanes = 32;
#ifdef _OPENMP
#define EMBER_LANES _Pragma("omp simd")
#else
#define EMBER_LANES _Pragma("GCC ivdep")
#endif
struct PhiloxLanes {
    std::uint32_t r[4][kRandomLanes];
};
inline void philox_lanes_portable(std::uint64_t first_counter, std::uint64_t key, PhiloxLanes& out) {
    std::uint32_t c0[kRandomLanes], c1[kRandomLanes], c2[kRandomLanes], c3[kRandomLanes];
    EMBER_LANES
    for (int l = 0; l < kRandomLanes; ++l) {
        const std::uint64_t counter = first_counter + static_cast<std::uint64_t>(l);
        c0[l] = static_cast<std::uint32_t>(counter), c1[l] = static_cast<std::uint32_t>(counter >> 32);
        c2[l] = 0x9E3779B9u, c3[l] = 0x85EBCA6Bu;  // fixed high words
    }
    std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
        EMBER_LANES
        for (int l = 0; l < kRandomLanes; ++l) {
            const std::uint64_t p0 = std::uint64_t{0xD2511F53u} * c0[l], p1 = std::uint64_t{0xCD9E8D57u} * c2[l];
            const std::uint32_t n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[l] ^ k0;
            const std::uint32_t n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[l] ^ k1;
            c1[l] = static_cast<std::uint32_t>(p1);
            c3[l] = static_cast<std::uint32_t>(p0);
            c0[l] = n0;
            c2[l] = n2;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int l = 0; l < kRandomLanes; ++l) out.r[0][l] = c0[l], out.r[1][l] = c1[l], out.r[2][l] = c2[l], out.r[3][l] = c3[l];
}
#if defined(__AVX512F__)
// The same rounds in AVX-512 registers. The vectorised loop above forms
// each 32x32 -> 64-bit product with 64-bit multiplies and permutes (GCC 12); here the even
// and the odd lanes are each one vpmuludq, and blends put the halves back in place.
// Several times faster, and the same bits (tests/test_core.cpp compares the two).
struct Products {
    __m512i hi, lo;
};
inline Products mul_hi_lo(__m512i a, __m512i m) {
    const __m512i even = _mm512_mul_epu32(a, m);                        // lanes 0, 2, ...: 64-bit products
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // lanes 1, 3, ...
    return {_mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd),
            _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32))};
}
// Sixteen lanes of state: one register per word.
struct PhiloxRegisters {
    __m512i c0, c1, c2, c3;
    PhiloxRegisters(std::uint64_t first_counter) {  // counters first_counter + 0 .. 15
        const __m512i lo = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first_counter)));
        const __m512i hi = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(first_counter >> 32)));
        c0 = _mm512_add_epi32(lo, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        c1 = _mm512_mask_add_epi32(hi, _mm512_cmplt_epu32_mask(c0, lo), hi, _mm512_set1_epi32(1));  // carry
        c2 = _mm512_set1_epi32(static_cast<int>(0x9E3779B9u));
        c3 = _mm512_set1_epi32(static_cast<int>(0x85EBCA6Bu));
    }
    void round(__m512i k0, __m512i k1) {
        const Products p0 = mul_hi_lo(c0, _mm512_set1_epi64(0xD2511F53)), p1 = mul_hi_lo(c2, _mm512_set1_epi64(0xCD9E8D57));
        c0 = _mm512_xor_si512(_mm512_xor_si512(p1.hi, c1), k0);
        c2 = _mm512_xor_si512(_mm512_xor_si512(p0.hi, c3), k1);
        c1 = p1.lo;
        c3 = p0.lo;
    }
    void store(PhiloxLanes& out, int lane) const {
        _mm512_storeu_si512(out.r[0] + lane, c0);
        _mm512_storeu_si512(out.r[1] + lane, c1);
        _mm512_storeu_si512(out.r[2] + lane, c2);
        _mm512_storeu_si512(out.r[3] + lane, c3);
    }
};
// Two registers' rounds interleaved: one alone waits on each multiply's latency.
inline void philox_lanes(std::uint64_t first_counter, std::uint64_t key, PhiloxLanes& out) {
    static_assert(kRandomLanes == 32, "two AVX-512 registers of 32-bit lanes");
    PhiloxRegisters a(first_counter), b(first_counter + 16);
    std::uint32_t k0 = static_cast<std::uint32_t>(key), k1 = static_cast<std::uint32_t>(key >> 32);
    for (int round = 0; round < 10; ++round) {
        const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0)), key1 = _mm512_set1_epi32(static_cast<int>(k1));
        a.round(key0, key1);
        b.round(key0, key1);
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    a.store(out, 0);
    b.store(out, 16);
}
#else
inline void philox_lanes(std::uint64_t first_counter, std::uint64_t key, PhiloxLanes& out) {
    philox_lanes_portable(first_counter, key, out);
}
#endif
// Uniform in (0, 1) from 53 random bits: never exactly 0, so log() is safe.
inline double unit_open(std::uint32_t hi, std::uint32_t lo) {
    const std::uint64_t bits = (std::uint64_t{hi} << 21) ^ (lo >> 11);  // 53 bits
    return (static_cast<double>(bits & ((std::uint64_t{1} << 53) - 1)) + 0.5) * 0x1.0p-53;
}
// The two uniforms of each lane.
struct UniformLanes {
    alignas(64) double u0[kRandomLanes];
    alignas(64) double u1[kRandomLanes];
};
inline void uniform_lanes(std::uint64_t first_counter, std::uint64_t key, UniformLanes& out) {
    PhiloxLanes r;
    philox_lanes(first_counter, key, r);
    EMBER_LANES
    for (int l = 0; l < kRandomLanes; ++l) {
        out.u0[l] = unit_open(r.r[0][l], r.r[1][l]);
        out.u1[l] = unit_open(r.r[2][l], r.r[3][l]);
    }
}
}  // namespace detail

/// A stream of random numbers; each draw advances the counter by the number of blocks used.
class Generator {
public:
    /// A stream at position 0 of the sequence selected by `seed`.
    explicit Generator(std::uint64_t seed = 0) : seed_(seed) {}
    /// The seed this stream was created with.
    std::uint64_t seed() const { return seed_; }
    /// The stream position: how many blocks (two uniforms each) have been drawn.
    std::uint64_t offset() const { return offset_; }
    /// Moves the stream to position `o` (checkpoints restore a generator this way).
    void set_offset(std::uint64_t o) { offset_ = o; }

    /// Blocks [0, count) in groups of detail::kRandomLanes consecutive blocks, spread over
    /// threads: `fill(first, n, lanes)` receives blocks first .. first + n - 1 (n <= the lane
    /// count) as lanes.u0[l], lanes.u1[l], two uniforms in (0,1) per block. Block i's values
    /// depend only on (seed, offset + i), never on the grouping or the thread count.
    template <class Fill>
    void block_lanes(std::int64_t count, Fill&& fill) {
        block_lanes_at(offset_, 0, count, fill);
        offset_ += static_cast<std::uint64_t>(count);
    }
    /// The same for blocks [first, last) of a draw that starts at stream position `at`,
    /// without advancing the stream: a thread can draw its own part of a draw (sample/sgld.hpp).
    template <class Fill>
    void block_lanes_at(std::uint64_t at, std::int64_t first, std::int64_t last, Fill&& fill) const {
        constexpr std::int64_t lanes = detail::kRandomLanes;
        const std::int64_t groups = (last - first + lanes - 1) / lanes;
        parallel_chunks(groups, (1 << 12) / lanes, 1, [&](std::int64_t b, std::int64_t e) {
            detail::UniformLanes u;
            for (std::int64_t k = b; k < e; ++k) {
                const std::int64_t block = first + k * lanes;
                detail::uniform_lanes(at + static_cast<std::uint64_t>(block), seed_, u);
                fill(block, std::min(lanes, last - block), u);
            }
        });
    }
    /// The same one block at a time: `fill(i, u0, u1)` receives block i.
    template <class Fill>
    void blocks(std::int64_t count, Fill&& fill) {
        block_lanes(count, [&](std::int64_t first, std::int64_t n, const detail::UniformLanes& u) {
            for (std::int64_t l = 0; l < n; ++l) fill(first + l, u.u0[l], u.u1[l]);
        });
    }
    /// One uniform double in (0, 1).
    double uniform01() {
        double out = 0;
        blocks(1, [&](std::int64_t, double u, double) { out = u; });
        return out;
    }
    /// Uniform integer in [0, n).
    std::int64_t randint(std::int64_t n) {
        EMBER_CHECK(n > 0, "randint", "upper bound must be positive, got ", n);
        return std::min<std::int64_t>(n - 1, static_cast<std::int64_t>(uniform01() * static_cast<double>(n)));
    }

private:
    std::uint64_t seed_;
    std::uint64_t offset_ = 0;
};

/// A new tensor of `shape` with elements drawn uniformly between lo and hi.
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

/// Normal(mean, std) by the Box-Muller transform of each block's two uniforms,
///
///     r = sqrt(-2 log u0), a = 2π u1:  r cos a, r sin a,
/// in double and in SIMD over the lanes of a group (every block goes through the same
/// vector code, so the draws do not depend on the grouping or the thread count). Element i
/// of a draw is the cosine (i even) or sine (i odd) of block i/2.
///
/// normal_elements writes elements [begin, end) of the draw that starts at stream position
/// `at` to out[0, end - begin), without advancing the stream.
template <Real T>
void normal_elements(const Generator& gen, std::uint64_t at, std::int64_t begin, std::int64_t end, T mean, T std, T* out) {
    using Batch = xsimd::batch<double>;
    constexpr std::int64_t width = static_cast<std::int64_t>(Batch::size);
    static_assert(detail::kRandomLanes % width == 0, "a group of lanes must be whole SIMD batches");
    const double m = mean, sd = std;
    gen.block_lanes_at(at, begin / 2, (end + 1) / 2, [&](std::int64_t first, std::int64_t count, const detail::UniformLanes& u) {
        alignas(64) double cos_part[detail::kRandomLanes], sin_part[detail::kRandomLanes];
        for (std::int64_t l = 0; l < detail::kRandomLanes; l += width) {
            const Batch u0 = Batch::load_aligned(u.u0 + l), u1 = Batch::load_aligned(u.u1 + l);
            const Batch r = xsimd::sqrt(Batch(-2.0) * xsimd::log(u0)) * Batch(sd);
            const auto [s, c] = xsimd::sincos(Batch(2.0 * std::numbers::pi) * u1);
            xsimd::fma(r, c, Batch(m)).store_aligned(cos_part + l);
            xsimd::fma(r, s, Batch(m)).store_aligned(sin_part + l);
        }
        if (2 * first >= begin && 2 * (first + count) <= end) {  // the whole block: a loop GCC vectorises
            T* to = out + (2 * first - begin);
            for (std::int64_t l = 0; l < count; ++l) {
                to[2 * l] = static_cast<T>(cos_part[l]);
                to[2 * l + 1] = static_cast<T>(sin_part[l]);
            }
            return;
        }
        for (std::int64_t l = 0; l < count; ++l) {
            const std::int64_t i = 2 * (first + l);
            if (i >= begin) out[i - begin] = static_cast<T>(cos_part[l]);
            if (i + 1 < end) out[i + 1 - begin] = static_cast<T>(sin_part[l]);
        }
    });
}
/// A new tensor of `shape` with Normal(mean, std) elements (see normal_elements).
template <Real T>
Tensor<T> normal(const Shape& shape, Generator& gen, T mean = T(0), T std = T(1)) {
    Tensor<T> t = Tensor<T>::empty(shape);
    const std::int64_t n = shape.numel();
    normal_elements(gen, gen.offset(), 0, n, mean, std, t.data());
    gen.set_offset(gen.offset() + static_cast<std::uint64_t>((n + 1) / 2));
    return t;
}

/// 1 with probability p, else 0.
template <Real T>
Tensor<T> bernoulli(const Shape& shape, Generator& gen, double p) {
    EMBER_CHECK(p >= 0 && p <= 1, "bernoulli", "probability must be in [0,1], got ", p);
    Tensor<T> u = uniform<T>(shape, gen);
    T* d = u.data();
    for (Index i = 0; i < u.numel(); ++i) d[i] = d[i] < static_cast<T>(p) ? T(1) : T(0);
    return u;
}

/// A uniformly random permutation of 0..n-1 (Fisher-Yates driven by one block of draws).
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

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_RANDOM_INSTANCES(X, T) \
    X template Tensor<T> uniform<T>(const Shape&, Generator&, T, T); \
    X template Tensor<T> normal<T>(const Shape&, Generator&, T, T); \
    X template Tensor<T> bernoulli<T>(const Shape&, Generator&, double);
EMBER_EXTERN_INSTANCES(EMBER_RANDOM_INSTANCES)

}  // namespace ember

#undef EMBER_LANES  // a local helper of this header
