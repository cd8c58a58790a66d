# Crash consistency of a training run: kills it with SIGKILL at random moments and resumes
# it each time, then checks that nothing was lost or damaged.
#   cmake -DEXE=path/to/example -DDIR=work/dir -DITERS=42 [-DKILLS=4] [-DKILL_MIN=1 -DKILL_MAX=5]
#         [-DSEED=1] ["-DARGS=x y"] -P check_crash.cmake
# An uninterrupted run to ITERS steps is the reference. A second run is started KILLS times
# and killed after a random KILL_MIN to KILL_MAX seconds (CMake's TIMEOUT sends SIGKILL),
# resuming from its last
# checkpoint whenever there is one. After each kill: metrics.csv, if any, has strictly
# increasing steps, and no row but a possibly partial last one is damaged. Then it runs to
# the end with --resume (so every checkpoint left by a kill has to load), and the final
# checkpoint, samples and metrics.csv must equal the reference's byte for byte (no lost or
# duplicated row), with no temporary file left in the directory.
foreach(default KILLS=4 KILL_MIN=1 KILL_MAX=5 SEED=1)
  string(REPLACE "=" ";" pair "${default}")
  list(GET pair 0 name)
  if(NOT DEFINED ${name})
    list(GET pair 1 ${name})
  endif()
endforeach()
file(REMOVE_RECURSE "${DIR}")
separate_arguments(extra_args UNIX_COMMAND "${ARGS}")
set(common --iters ${ITERS} --threads 1 --n-samples 16 ${extra_args})

execute_process(COMMAND "${EXE}" ${common} --out "${DIR}/straight" RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the uninterrupted run failed with ${rc}")
endif()

# Fails unless `csv` has a "step" header and data rows with strictly increasing integer
# steps; the last line may be cut short (the row being written when the process died).
function(check_metrics csv)
  if(NOT EXISTS "${csv}")
    return()
  endif()
  file(STRINGS "${csv}" lines)
  list(LENGTH lines n)
  if(n EQUAL 0)
    return()
  endif()
  list(GET lines 0 header)
  if(NOT header MATCHES "^step,")
    message(FATAL_ERROR "${csv}: the header is '${header}'")
  endif()
  math(EXPR last "${n} - 1")
  set(previous -1)
  foreach(i RANGE 1 ${last})
    if(i GREATER last)
      break()
    endif()
    list(GET lines ${i} line)
    if(NOT line MATCHES "^([0-9]+),")
      if(i EQUAL last)
        break()  # a partial last row; the next run drops it
      endif()
      message(FATAL_ERROR "${csv}: row ${i} is damaged: '${line}'")
    endif()
    if(NOT CMAKE_MATCH_1 GREATER previous)
      message(FATAL_ERROR "${csv}: step ${CMAKE_MATCH_1} follows step ${previous}")
    endif()
    set(previous ${CMAKE_MATCH_1})
  endforeach()
endfunction()

set(run "${DIR}/killed")
set(killed 0)
string(RANDOM LENGTH 1 RANDOM_SEED ${SEED} first)  # seeds the draws below
foreach(k RANGE 1 ${KILLS})
  # A moment between KILL_MIN and KILL_MAX seconds, in tenths (digits 1-9: no leading zero,
  # which math() would not read as decimal).
  string(RANDOM LENGTH 2 ALPHABET 123456789 draw)
  math(EXPR tenths "${KILL_MIN} * 10 + (${draw} - 11) * (${KILL_MAX} - ${KILL_MIN}) * 10 / 88")
  math(EXPR whole "${tenths} / 10")
  math(EXPR frac "${tenths} % 10")
  set(resume "")
  if(EXISTS "${run}/checkpoint.safetensors")
    set(resume --resume)
  endif()
  execute_process(COMMAND "${EXE}" ${common} ${resume} --out "${run}" TIMEOUT ${whole}.${frac}
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc MATCHES "timeout" AND NOT rc EQUAL 0)
    message(FATAL_ERROR "run ${k} (${resume}) failed with '${rc}': ${err}")
  endif()
  if(rc MATCHES "timeout")
    math(EXPR killed "${killed} + 1")
    message(STATUS "run ${k} ${resume}: killed after ${whole}.${frac} s")
  else()
    message(STATUS "run ${k} ${resume}: finished before the kill at ${whole}.${frac} s")
  endif()
  check_metrics("${run}/metrics.csv")
endforeach()

set(resume "")
if(EXISTS "${run}/checkpoint.safetensors")
  set(resume --resume)
endif()
execute_process(COMMAND "${EXE}" ${common} ${resume} --out "${run}" RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the final run (${resume}) failed with ${rc}: ${err}")
endif()
check_metrics("${run}/metrics.csv")
foreach(f checkpoint.safetensors samples.npy metrics.csv)
  execute_process(COMMAND "${CMAKE_COMMAND}" -E compare_files "${DIR}/straight/${f}" "${run}/${f}" RESULT_VARIABLE same)
  if(NOT same EQUAL 0)
    message(FATAL_ERROR "after ${killed} kills and resumes, ${f} differs from the uninterrupted run's")
  endif()
endforeach()
file(GLOB leftovers LIST_DIRECTORIES false "${run}/.*.tmp-*")
if(leftovers)
  message(FATAL_ERROR "temporary files left after the final run: ${leftovers}")
endif()
if(killed EQUAL 0)
  message(FATAL_ERROR "no run was killed: the kill times (${KILL_MIN}-${KILL_MAX} s) are too long for this run")
endif()
message(STATUS "${killed} kills: every checkpoint loaded, no row lost, no temporary file left")
