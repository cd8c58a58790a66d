#pragma once
// Internal: ember's private copies of stb_image_write (PNG encoding) and stb_easy_font
// (a tiny bitmap font), both from libstb-dev. Nothing here is part of ember's API.
//
// stb_image_write is a single-header library whose function bodies are normally compiled
// in exactly one translation unit of a program (the one that defines
// STB_IMAGE_WRITE_IMPLEMENTATION). A header-only library cannot pick that unit, so every
// translation unit that includes this file compiles its own copy instead:
//   * STB_IMAGE_WRITE_STATIC makes all of stb's functions `static` (internal linkage);
//   * the whole header is included inside namespace ember_stb_detail, so its functions,
//     types and static variables cannot collide with a copy of stb that the program
//     itself includes, before or after ember, with or without its own
//     STB_IMAGE_WRITE_IMPLEMENTATION. (The namespace is not inside `ember` on purpose:
//     there, stb's calls of the C library's abs, pow, ... would find ember's
//     elementwise functions of the same names instead.);
//   * stb's include guard and configuration macros are saved and restored around the
//     inclusion (push_macro/pop_macro), so a later `#include <stb/stb_image_write.h>` by
//     the program still declares the usual global functions.
// Unused static functions cost nothing (the compiler drops them). The copies are
// token-for-token identical in every translation unit, so ember's inline functions that
// call them behave the same whichever translation unit's definition the linker keeps.
//
// stb_easy_font is already all `static`; it gets the same namespace and guard treatment.
//
// This file is marked as a system header so that the warnings stb's C code triggers under
// strict flags (-Wold-style-cast, -Wconversion, ...) are not reported to ember's users;
// it contains nothing but the wrapped includes.
#pragma GCC system_header

#if !__has_include(<stb/stb_image_write.h>) || !__has_include(<stb/stb_easy_font.h>)
#error "ember's image and plot headers need <stb/stb_image_write.h> and <stb/stb_easy_font.h>: install libstb-dev (Debian/Ubuntu: apt install libstb-dev), or add the directory that contains stb/ to the include path"
// A missing #include is a fatal error: compilation stops here instead of going on to
// report every use of stb in ember's headers.
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#endif

// The C headers stb includes, included here at global scope first: their include guards
// then turn stb's own #includes of them (inside the namespace below) into no-ops.
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma push_macro("INCLUDE_STB_IMAGE_WRITE_H")
#pragma push_macro("STB_IMAGE_WRITE_IMPLEMENTATION")
#pragma push_macro("STB_IMAGE_WRITE_STATIC")
#pragma push_macro("STBI_WRITE_NO_STDIO")
#pragma push_macro("STBIWDEF")
#pragma push_macro("INCLUDE_STB_EASY_FONT_H")
#undef INCLUDE_STB_IMAGE_WRITE_H
#undef STBIWDEF
#undef INCLUDE_STB_EASY_FONT_H
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STBI_WRITE_NO_STDIO  // ember writes files itself (atomically); no FILE* functions

namespace ember_stb_detail {
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
}  // namespace ember_stb_detail

#pragma pop_macro("INCLUDE_STB_EASY_FONT_H")
#pragma pop_macro("STBIWDEF")
#pragma pop_macro("STBI_WRITE_NO_STDIO")
#pragma pop_macro("STB_IMAGE_WRITE_STATIC")
#pragma pop_macro("STB_IMAGE_WRITE_IMPLEMENTATION")
#pragma pop_macro("INCLUDE_STB_IMAGE_WRITE_H")
