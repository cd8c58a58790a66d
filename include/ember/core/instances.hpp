#pragma once
/// \file
/// Header-only or precompiled: how a program gets ember's float and double code.
///
/// By default ember is header-only: every translation unit that calls `matmul<float>`
/// instantiates and compiles it. A program that links the CMake target `ember::compiled`
/// (which defines EMBER_COMPILED) takes the heavy, non-expression part instead from that
/// library, where it was compiled once: the ops, the backward walk, layers, optimisers,
/// checkpoints. The headers are the same either way; only what a translation unit
/// compiles changes.
///
/// Each header that has such code ends with its list of instances, a macro of a prefix
/// and a scalar type:
///
///     #define EMBER_REDUCE_INSTANCES(X, T) X template Var<T> sum<T>(const Var<T>&, ...); ...
///     EMBER_EXTERN_INSTANCES(EMBER_REDUCE_INSTANCES)
///
/// With EMBER_COMPILED, EMBER_EXTERN_INSTANCES declares the list `extern template` for
/// float and double, so the compiler neither instantiates nor emits it here; the
/// library's sources (src/) expand the same list with EMBER_DEFINE_INSTANCES, which
/// defines it. Only templates that are not inline are listed: the standard lets a
/// compiler instantiate an inline function despite `extern template` (g++ does, to
/// inline it), which would bring back the cost the list is there to remove.
#if defined(EMBER_COMPILED)
#define EMBER_EXTERN_INSTANCES(LIST) LIST(extern, float) LIST(extern, double)
#else
#define EMBER_EXTERN_INSTANCES(LIST)
#endif
#define EMBER_DEFINE_INSTANCES(LIST) LIST(, float) LIST(, double)

/// Functions that are not templates are compiled wherever their definition is seen, used or
/// not. The few that pull in heavy code (Eigen's decompositions) are declared in their
/// header and defined in a block guarded by EMBER_HEADER_DEFINITIONS, declaration and
/// definition both marked EMBER_INLINE. Header-only, the block is there and its functions
/// are `inline`. With EMBER_COMPILED a program sees only the declarations, and one source
/// of ember::compiled (src/out_of_line.cpp, which defines EMBER_OUT_OF_LINE_SOURCE)
/// compiles the block once.
#if !defined(EMBER_COMPILED) || defined(EMBER_OUT_OF_LINE_SOURCE)
#define EMBER_HEADER_DEFINITIONS 1
#else
#define EMBER_HEADER_DEFINITIONS 0
#endif
/// `inline` when the definitions are in the header; empty with EMBER_COMPILED, where the
/// block guarded by EMBER_HEADER_DEFINITIONS is compiled once in ember::compiled.
#if defined(EMBER_COMPILED)
#define EMBER_INLINE
#else
#define EMBER_INLINE inline
#endif
