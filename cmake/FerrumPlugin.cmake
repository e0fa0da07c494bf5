# ferrum_add_plugin(<name> SOURCES <src>... [LIBS <target>...] [NO_INSTALL] [OUTPUT_DIR <dir>])
#
# Makes libferrum-<name>.so: a MODULE library with hidden visibility whose only exported
# symbol is ferrum_plugin_entry_v1 (linker version script), placed in the build tree's plugin
# directory (lib/ferrum) and installed under <libdir>/ferrum.
function(ferrum_add_plugin name)
  cmake_parse_arguments(P "NO_INSTALL" "OUTPUT_DIR" "SOURCES;LIBS" ${ARGN})
  set(target ferrum-${name})
  add_library(${target} MODULE ${P_SOURCES})
  if(NOT P_OUTPUT_DIR)
    set(P_OUTPUT_DIR ${FERRUM_PLUGIN_BUILD_DIR})
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME ferrum-${name}
    LIBRARY_OUTPUT_DIRECTORY ${P_OUTPUT_DIR}
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/ferrum-plugin.map)
  target_link_options(${target} PRIVATE
    -Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/ferrum-plugin.map
    -Wl,--no-undefined -Wl,--exclude-libs,ALL)
  target_link_libraries(${target} PRIVATE ferrum::abi ${P_LIBS})
  if(NOT P_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}/ferrum)
  endif()
endfunction()
