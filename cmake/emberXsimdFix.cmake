# Work around broken xsimd CMake packages, notably Debian 12's libxsimd-dev
# 8.1: its imported `xsimd` target lists a bare `xtl` in
# INTERFACE_LINK_LIBRARIES but the package never finds xtl, so every link
# fails with "cannot find -lxtl". xsimd only needs xtl (headers only) when
# XSIMD_ENABLE_XTL_COMPLEX is defined, which ember never does.
#
# Rewrite that entry to $<TARGET_NAME_IF_EXISTS:xtl>: a real `xtl` target is
# still used when the project has one, otherwise the entry vanishes.
# Included after find_package(xsimd) by CMakeLists.txt and emberConfig.cmake;
# does nothing for correct xsimd packages.
if(TARGET xsimd)
  get_target_property(_ember_xsimd_libs xsimd INTERFACE_LINK_LIBRARIES)
  if(_ember_xsimd_libs AND "xtl" IN_LIST _ember_xsimd_libs)
    list(TRANSFORM _ember_xsimd_libs REPLACE "^xtl$" "$<TARGET_NAME_IF_EXISTS:xtl>")
    set_property(TARGET xsimd PROPERTY INTERFACE_LINK_LIBRARIES "${_ember_xsimd_libs}")
  endif()
  unset(_ember_xsimd_libs)
endif()
