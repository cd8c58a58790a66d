# Runs an example straight to --iters 2N and, separately, to N and then --resume to 2N; the
# two final checkpoints and sample files must be identical byte for byte.
#   cmake -DEXE=path/to/example -DDIR=work/dir -DN=20 ["-DFILES=a b"] ["-DARGS=x y"] [-DTRAINING_RUN=1]
#         -P check_resume.cmake
# FILES: the outputs compared, separated by spaces (default: checkpoint.safetensors samples.npy);
# ARGS: extra flags for every run, separated by spaces (e.g. "--iw-images 20").
# TRAINING_RUN (an example built on common/run.hpp): metrics.csv is compared too, a further
# --resume with another --lr must fail, saying so, and change no file, and a --resume of the
# finished run must succeed and keep metrics.csv.
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
if(TRAINING_RUN)
  list(APPEND files metrics.csv)
endif()
# Fails with "<what> <file>" unless each file is the same in straight/ and resumed/.
function(require_same what)
  foreach(f ${ARGN})
    execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${DIR}/straight/${f}" "${DIR}/resumed/${f}"
                    RESULT_VARIABLE same)
    if(NOT same EQUAL 0)
      message(FATAL_ERROR "${what} ${f}")
    endif()
  endforeach()
endfunction()
require_same("resumed run differs from the uninterrupted one in" ${files})
message(STATUS "resumed run is bit-identical to the uninterrupted one")

if(TRAINING_RUN)
  execute_process(COMMAND "${EXE}" --iters ${TWICE} ${common} --resume --lr 0.0123 --out "${DIR}/resumed"
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(rc EQUAL 0 OR NOT err MATCHES "--resume with --lr 0.0123, but the checkpoint's run has --lr")
    message(FATAL_ERROR "--resume with another --lr was not refused (status ${rc}): ${err}")
  endif()
  require_same("the refused --resume changed" ${files})
  message(STATUS "a --resume with another --lr is refused and changes nothing")

  # Resuming a run that has already finished takes no step and keeps its log.
  execute_process(COMMAND "${EXE}" --iters ${TWICE} ${common} --resume --out "${DIR}/resumed"
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "--resume of a finished run failed with ${rc}: ${err}")
  endif()
  require_same("--resume of a finished run changed" metrics.csv)
  message(STATUS "a --resume of a finished run succeeds and keeps metrics.csv")
endif()
