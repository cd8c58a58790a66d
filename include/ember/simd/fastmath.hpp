#pragma once
// Transcendental functions for float batches, tighter than xsimd's general versions: the
// elementwise kernels are bound by exp/log, not by memory. They follow the Cephes single
// precision algorithms (range reduction, then a short polynomial), keep IEEE special values
// (±inf, NaN, 0, subnormal inputs) and stay within 2 ulp of the correctly rounded result
// (tests/test_elementwise.cpp measures it). Double batches use xsimd's functions.
#include <limits>
#include <xsimd/xsimd.hpp>

namespace ember::simd {

template <class A>
xsimd::batch<float, A> exp(const xsimd::batch<float, A>& x) {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    // exp(x) = 2^n · exp(r), n = round(x / ln 2), |r| <= ln2 / 2 (ln 2 split in two parts
    // so that x - n·ln2 is exact).
    const B n = xsimd::nearbyint(x * B(1.44269504088896341f));
    B r = xsimd::fma(n, B(-0.693359375f), x);
    r = xsimd::fma(n, B(2.12194440e-4f), r);
    B p = B(1.9875691500e-4f);
    p = xsimd::fma(p, r, B(1.3981999507e-3f));
    p = xsimd::fma(p, r, B(8.3334519073e-3f));
    p = xsimd::fma(p, r, B(4.1665795894e-2f));
    p = xsimd::fma(p, r, B(1.6666665459e-1f));
    p = xsimd::fma(p, r, B(5.0000001201e-1f));
    p = xsimd::fma(p, r * r, r) + B(1.f);
    // 2^n built in two halves so that n down to -149 (subnormal results) stays exact.
    const I ni = xsimd::batch_cast<std::int32_t>(n);
    const I half = ni >> 1;
    const B s1 = xsimd::bitwise_cast<B>((half + I(127)) << 23);
    const B s2 = xsimd::bitwise_cast<B>((ni - half + I(127)) << 23);
    B y = p * s1 * s2;
    y = xsimd::select(x > B(88.72283935546875f), B(std::numeric_limits<float>::infinity()), y);
    y = xsimd::select(x < B(-103.972084045410f), B(0.f), y);
    return y;
}

template <class A>
xsimd::batch<double, A> exp(const xsimd::batch<double, A>& x) {
    return xsimd::exp(x);
}

template <class A>
xsimd::batch<float, A> log(const xsimd::batch<float, A>& xin) {
    using B = xsimd::batch<float, A>;
    using I = xsimd::batch<std::int32_t, A>;
    // Subnormal inputs are scaled into the normal range first.
    const auto tiny = xin < B(std::numeric_limits<float>::min());
    const B x = xsimd::select(tiny, xin * B(8388608.f), xin);  // · 2^23
    const I bits = xsimd::bitwise_cast<I>(x);
    const I e = ((bits >> 23) & I(0xff)) - I(127);
    B m = xsimd::bitwise_cast<B>((bits & I(0x7fffff)) | I(0x3f800000));  // [1, 2)
    // Centre the mantissa on 1: m in [sqrt(1/2), sqrt(2)).
    const auto big = m > B(1.41421356237f);
    m = xsimd::select(big, m * B(0.5f), m);
    B ef = xsimd::batch_cast<float>(e);
    ef = xsimd::select(big, ef + B(1.f), ef);
    ef = xsimd::select(tiny, ef - B(23.f), ef);
    const B f = m - B(1.f);
    const B z = f * f;
    B p = B(7.0376836292e-2f);
    p = xsimd::fma(p, f, B(-1.1514610310e-1f));
    p = xsimd::fma(p, f, B(1.1676998740e-1f));
    p = xsimd::fma(p, f, B(-1.2420140846e-1f));
    p = xsimd::fma(p, f, B(1.4249322787e-1f));
    p = xsimd::fma(p, f, B(-1.6668057665e-1f));
    p = xsimd::fma(p, f, B(2.0000714765e-1f));
    p = xsimd::fma(p, f, B(-2.4999993993e-1f));
    p = xsimd::fma(p, f, B(3.3333331174e-1f));
    B y = f * z * p;
    y = xsimd::fma(ef, B(-2.12194440e-4f), y);
    y = xsimd::fma(B(-0.5f), z, y);
    B r = f + y;
    r = xsimd::fma(ef, B(0.693359375f), r);
    constexpr float inf = std::numeric_limits<float>::infinity();
    r = xsimd::select(xin == B(0.f), B(-inf), r);
    r = xsimd::select(xin == B(inf), B(inf), r);
    r = xsimd::select((xin < B(0.f)) | xsimd::isnan(xin), B(std::numeric_limits<float>::quiet_NaN()), r);
    return r;
}

template <class A>
xsimd::batch<double, A> log(const xsimd::batch<double, A>& x) {
    return xsimd::log(x);
}

// log(1 + x) with the rounding error of 1 + x put back: log1p(x) = log(u) + (x - (u-1))/u.
template <class A>
xsimd::batch<float, A> log1p(const xsimd::batch<float, A>& x) {
    using B = xsimd::batch<float, A>;
    const B u = x + B(1.f);
    const B r = simd::log(u) + (x - (u - B(1.f))) / u;
    constexpr float inf = std::numeric_limits<float>::infinity();
    // u = 0 (x = -1) and u = inf would turn the correction into NaN; log(u) is right there.
    return xsimd::select((u == B(0.f)) | (x == B(inf)), simd::log(u), r);
}

template <class A>
xsimd::batch<double, A> log1p(const xsimd::batch<double, A>& x) {
    return xsimd::log1p(x);
}

}  // namespace ember::simd
