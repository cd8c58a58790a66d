# Runs an example straight to --iters 2N and, separately, to N and then --resume to 2N; the
# two final checkpoints and sample files must be identical byte for byte.
#   cmake -DEXE=path/to/example -DDIR=work/dir -DN=20 ["-DFILES=a b"] ["-DARGS=x y"] -P check_resume.cmake
# FILES: the outputs compared, separated by spaces (default: checkpoint.safetensors samples.npy);
# ARGS: extra flags for every run, separated by spaces (e.g. "--iw-images 20").
file(REMOVE_RECURSE "${DIR}")
math(EXPR TWICE "2 * ${N}")
separate_arguments(extra_args UNIX_COMMAND "${ARGS}")
set(common --threads 1 --n-samples 16 ${extra_args})
foreach(run "straight;${TWICE};" "resumed;${N};" "resumed;${TWICE};--resume")
  list(GET run 0 name)
  list(GET run 1 iters)
  list(LENGTH run len)
  set(extra "")
  if(len GREATER 2)
    list(GET run 2 extra)
  endif()
  execute_process(COMMAND "${EXE}" --iters ${iters} ${common} ${extra} --out "${DIR}/${name}"
                  RESULT_VARIABLE rc OUTPUT_QUIET)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${EXE} --iters ${iters} ${extra} failed with ${rc}")
  endif()
endforeach()
if(NOT DEFINED FILES)
  set(FILES "checkpoint.safetensors samples.npy")
endif()
separate_arguments(files UNIX_COMMAND "${FILES}")
foreach(f ${files})
  execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${DIR}/straight/${f}" "${DIR}/resumed/${f}"
                  RESULT_VARIABLE same)
  if(NOT same EQUAL 0)
    message(FATAL_ERROR "resumed run differs from the uninterrupted one in ${f}")
  endif()
endforeach()
message(STATUS "resumed run is bit-identical to the uninterrupted one")
