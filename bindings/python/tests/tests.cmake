# CTest tests of the Python package (label `python`); included by the top-level CMakeLists.txt.
#  python.gen_python_check  the generated binding sources match the registry
#  python.pytest            bindings/python/tests against the package built in this tree;
#                           skipped (with the reason) when FERRUM_BUILD_PYTHON is off, or
#                           pytest / numpy are missing from that Python
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME python.gen_python_check
           COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/tools/abigen/gen_python.py --check)
  set_tests_properties(python.gen_python_check PROPERTIES LABELS python)
endif()
if(TARGET _ferrum)
  add_test(NAME python.pytest COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/run.sh ${Python_EXECUTABLE}
                                      ${PROJECT_BINARY_DIR}/python)
  # the package must find its plugins by itself: no plugin path, backend or config from outside
  set_tests_properties(python.pytest PROPERTIES ENVIRONMENT_MODIFICATION
    "FERRUM_PLUGIN_PATH=unset:;FERRUM_BACKEND=unset:;FERRUM_CONFIG=unset:")
  if(TARGET ferrum-info)
    set_tests_properties(python.pytest PROPERTIES ENVIRONMENT "FERRUM_INFO=$<TARGET_FILE:ferrum-info>")
  endif()
else()
  add_test(NAME python.pytest COMMAND sh -c
           "echo 'SKIPPED: the Python package is not built (FERRUM_BUILD_PYTHON is off, or no Python with nanobind was found; see .ci/run)'; exit 77")
endif()
set_tests_properties(python.pytest PROPERTIES LABELS python SKIP_RETURN_CODE 77)
