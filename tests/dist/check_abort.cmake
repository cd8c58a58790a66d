# cmake -DCMD="mpiexec|-n|2|..." -DEXE=<test_dist> -DEXPECT=<text> -DSECONDS=<n> -P check_abort.cmake
# Runs `CMD... EXE --throw-on-rank 1` and passes only if the job ends by itself within
# SECONDS, with a non-zero status, and its output contains EXPECT.
string(REPLACE "|" ";" cmd "${CMD}")
list(FILTER cmd EXCLUDE REGEX "^$")
execute_process(COMMAND ${cmd} "${EXE}" --throw-on-rank 1
                TIMEOUT ${SECONDS}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit status: ${rc}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job hung: still running after ${SECONDS} s (a failed rank must abort it)")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited with status 0 although rank 1 threw")
endif()
string(FIND "${out}${err}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the output lacks '${EXPECT}'")
endif()
message(STATUS "OK: the failure on rank 1 ended the job (status ${rc}) with its message")
