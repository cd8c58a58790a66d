# cmake -DEXE=<test_dist> -P check_single_process_failure.cmake
# Runs EXE --throw-on-rank 0 as one process, without mpirun: it must exit with status 1 and
# print the failure's message, and print no MPI_Abort banner.
execute_process(COMMAND "${EXE}" --throw-on-rank 0 TIMEOUT 50
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit status: ${rc}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "expected exit status 1, got ${rc}")
endif()
string(FIND "${err}" "deliberate failure on rank 0" at)
if(at EQUAL -1)
  message(FATAL_ERROR "stderr lacks the failure's message")
endif()
if("${out}${err}" MATCHES "MPI_ABORT|MPI_Abort")
  message(FATAL_ERROR "a one-process run printed MPI_Abort's banner")
endif()
message(STATUS "OK: one process, its message alone, status 1")
