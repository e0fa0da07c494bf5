# cmake -DDEMO=<ferrum-demo> "-DCOMMON=<args>" "-DA=<args>" "-DB=<args>" [-DB_LAUNCH=<launcher args>]
#       -P compare_ids.cmake
#
# Runs `DEMO COMMON A --json` and `[B_LAUNCH] DEMO COMMON B --json` (arguments separated by ';';
# B_LAUNCH e.g. an MPI launcher, whose rank 0 alone prints), requires both to exit 0, and fails
# unless their "generated" token ids are identical (and not empty).
function(run_demo launch extra out_var)
  execute_process(COMMAND ${launch} ${DEMO} ${COMMON} ${extra} --json RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  string(REPLACE ";" " " shown "${launch};${COMMON};${extra}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ferrum-demo ${shown} --json: exit ${rc}\n${out}\n${err}")
  endif()
  if(NOT out MATCHES "\"generated\": \\[([0-9,]+)\\]")
    message(FATAL_ERROR "ferrum-demo ${shown} --json: no \"generated\" ids in\n${out}\n${err}")
  endif()
  message(STATUS "${shown}: generated ${CMAKE_MATCH_1}")
  set(${out_var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

run_demo("" "${A}" ids_a)
run_demo("${B_LAUNCH}" "${B}" ids_b)
if(NOT ids_a STREQUAL ids_b)
  message(FATAL_ERROR "generated ids differ:\n  ${A}: ${ids_a}\n  ${B}: ${ids_b}")
endif()
message(STATUS "identical")
