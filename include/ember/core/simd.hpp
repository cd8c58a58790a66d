#pragma once
/// \file
/// xsimd, included the one way ember includes it.
///
/// g++ defines two AVX-512BW intrinsics, _mm512_mask_blend_epi8 and _mm512_mask_blend_epi16,
/// as macros with C-style casts when it does not optimise (-O0), where it otherwise declares
/// them as functions. xsimd 8's `select` on integer batches passes its batch objects to them,
/// which converts implicitly to a function's __m512i argument but not through the macro's
/// cast, so any debug build for an AVX-512BW CPU that reaches such a `select` (the double
/// logarithm does, through its exponent bits) fails to compile. Here the macros become the
/// functions they are when optimising, before xsimd's templates are read.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__) && defined(__AVX512BW__)
#include <immintrin.h>

namespace ember::detail {
inline __m512i mask_blend_epi8(__mmask64 mask, __m512i a, __m512i w) {
    return reinterpret_cast<__m512i>(__builtin_ia32_blendmb_512_mask(reinterpret_cast<__v64qi>(a), reinterpret_cast<__v64qi>(w), mask));
}
inline __m512i mask_blend_epi16(__mmask32 mask, __m512i a, __m512i w) {
    return reinterpret_cast<__m512i>(__builtin_ia32_blendmw_512_mask(reinterpret_cast<__v32hi>(a), reinterpret_cast<__v32hi>(w), mask));
}
}  // namespace ember::detail

#undef _mm512_mask_blend_epi8
#undef _mm512_mask_blend_epi16
#define _mm512_mask_blend_epi8 ::ember::detail::mask_blend_epi8
#define _mm512_mask_blend_epi16 ::ember::detail::mask_blend_epi16
#endif

#include <xsimd/xsimd.hpp>
