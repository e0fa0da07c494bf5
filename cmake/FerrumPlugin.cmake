# ferrum_add_plugin(<name> SOURCES <src>... [LIBS <target>...] [OUTPUT_DIR <dir>]
#                   [DESTINATION <dir>] [NO_INSTALL])
#
# Makes libferrum-<name>.so (target ferrum-<name>): a MODULE library built with hidden visibility
# whose only exported symbol is ferrum_plugin_entry_v1 (the linker version script
# ferrum-plugin.map next to this file), linked against the ABI headers (ferrum::abi) and LIBS,
# never against libferrum. Unless NO_INSTALL it is installed under DESTINATION (default
# <libdir>/ferrum: the directory an installed libferrum.so searches).
#
# One helper for both sides: the ferrum build uses it for its own plugins (output in the build's
# lib/ferrum), and it is installed with the package, so a vendor's project gets it from
#   find_package(ferrum REQUIRED)
#   ferrum_add_plugin(myaccel SOURCES myaccel.c)
# (output in OUTPUT_DIR, else CMake's default library output directory).
include_guard(GLOBAL)
include(GNUInstallDirs)

function(ferrum_add_plugin name)
  cmake_parse_arguments(P "NO_INSTALL" "OUTPUT_DIR;DESTINATION" "SOURCES;LIBS" ${ARGN})
  if(P_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "ferrum_add_plugin(${name}): unknown arguments: ${P_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT P_SOURCES)
    message(FATAL_ERROR "ferrum_add_plugin(${name}): SOURCES is required")
  endif()
  set(target ferrum-${name})
  set(map ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/ferrum-plugin.map)
  add_library(${target} MODULE ${P_SOURCES})
  if(NOT P_OUTPUT_DIR AND FERRUM_PLUGIN_BUILD_DIR)  # inside the ferrum build
    set(P_OUTPUT_DIR ${FERRUM_PLUGIN_BUILD_DIR})
  endif()
  if(P_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIR})
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME ferrum-${name}
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${map})
  target_link_options(${target} PRIVATE
    -Wl,--version-script=${map} -Wl,--no-undefined -Wl,--exclude-libs,ALL)
  target_link_libraries(${target} PRIVATE ferrum::abi ${P_LIBS})
  if(NOT P_NO_INSTALL)
    if(NOT P_DESTINATION)
      set(P_DESTINATION ${CMAKE_INSTALL_LIBDIR}/ferrum)
    endif()
    install(TARGETS ${target} LIBRARY DESTINATION ${P_DESTINATION})
    # Installed plugins are what a host may load: the ferrum build collects them into the
    # ferrum_all_plugins target (what ./scripts/demo builds besides ferrum-demo).
    set_property(GLOBAL APPEND PROPERTY FERRUM_INSTALLED_PLUGINS ${target})
  endif()
endfunction()
