# The install, as a host application, an operator and a plugin vendor see it (no build tree,
# no LD_LIBRARY_PATH, no FERRUM_* variables):
#  1. cmake --install into PREFIX;
#  2. the installed ferrum-info runs (RUNPATH finds libferrum.so) and searches only the
#     install's plugin directory, never this build tree's;
#  3. a consumer application (C++, and C99 through ferrum/ferrum_host.h) builds with
#     find_package(ferrum) -> ferrum::ferrum (and the installed <ferrum/cuda/stream_ext.h>) and
#     runs on the installed CPU plugin;
#  4. an out-of-tree plugin (the C example's source) builds with find_package(ferrum) +
#     ferrum_add_plugin(), installs into PLUGIN_PREFIX, exports only its entry symbol, and the
#     installed ferrum-conformance passes it.
file(REMOVE_RECURSE ${PREFIX} ${CONSUMER_BUILD} ${PLUGIN_BUILD} ${PLUGIN_PREFIX})
set(clean_env ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH --unset=FERRUM_PLUGIN_PATH --unset=FERRUM_BACKEND
    --unset=FERRUM_CONFIG XDG_CONFIG_HOME=${PREFIX}/no-config HOME=${PREFIX}/no-home)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
  set(run_output "${out}${err}" PARENT_SCOPE)
endfunction()

# 1.
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX})
file(REAL_PATH ${PREFIX} prefix_real)
file(REAL_PATH ${BUILD_DIR} build_real)
file(GLOB libferrum ${PREFIX}/lib*/libferrum.so)
get_filename_component(libdir ${libferrum} DIRECTORY)

# The public headers: the ABI and the CUDA plugin's extension header (installed with or without
# the CUDA plugin).
foreach(header ferrum/ferrum_plugin.h ferrum/ferrum.hpp ferrum/cuda/stream_ext.h)
  if(NOT EXISTS ${PREFIX}/include/${header})
    message(FATAL_ERROR "cmake --install did not install include/${header}")
  endif()
endforeach()

# 2.
if(EXISTS ${PREFIX}/bin/ferrum-info)
  run(${clean_env} ${PREFIX}/bin/ferrum-info)
  string(FIND "${run_output}" "${build_real}/lib/ferrum" in_build)
  if(NOT in_build EQUAL -1)
    message(FATAL_ERROR "the installed ferrum-info searched the build tree (${build_real}/lib/ferrum):\n${run_output}")
  endif()
  file(REAL_PATH ${libdir}/ferrum plugin_dir_real)
  string(FIND "${run_output}" "${plugin_dir_real}/libferrum-cpu.so" found_cpu)
  if(found_cpu EQUAL -1)
    message(FATAL_ERROR "the installed ferrum-info did not list ${plugin_dir_real}/libferrum-cpu.so:\n${run_output}")
  endif()
endif()

# 3.
run(${CMAKE_COMMAND} -S ${CONSUMER_SRC} -B ${CONSUMER_BUILD} -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${PREFIX})
run(${CMAKE_COMMAND} --build ${CONSUMER_BUILD})
run(${clean_env} ${CONSUMER_BUILD}/consumer)
run(${clean_env} ${CONSUMER_BUILD}/consumer_c)

# 4.
run(${CMAKE_COMMAND} -S ${PLUGIN_SRC} -B ${PLUGIN_BUILD} -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${PREFIX}
    -DEXAMPLE_SOURCE=${EXAMPLE_SOURCE})
run(${CMAKE_COMMAND} --build ${PLUGIN_BUILD})
run(${CMAKE_COMMAND} --install ${PLUGIN_BUILD} --prefix ${PLUGIN_PREFIX})
file(GLOB plugin ${PLUGIN_PREFIX}/lib*/ferrum/libferrum-cexample.so)
if(NOT plugin)
  message(FATAL_ERROR "ferrum_add_plugin() did not install ${PLUGIN_PREFIX}/<libdir>/ferrum/libferrum-cexample.so")
endif()
find_program(NM nm REQUIRED)
run(${NM} -D --defined-only ${plugin})
string(REGEX MATCHALL "[^\n]+" symbols "${run_output}")
if(NOT symbols MATCHES "^[0-9a-f]+ T ferrum_plugin_entry_v1$")
  message(FATAL_ERROR "the out-of-tree plugin must export ferrum_plugin_entry_v1 alone; it exports:\n${run_output}")
endif()
if(EXISTS ${PREFIX}/bin/ferrum-conformance)
  run(${clean_env} ${PREFIX}/bin/ferrum-conformance --plugin ${plugin})
endif()
