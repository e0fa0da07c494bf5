# Runs ferrum-demo and the crate's demo example (examples/demo.rs) with the same small model and
# eager decoding on the CPU plugin and on F32, and fails unless both print the same
# "generated:" line. -DCARGO, -DCRATE, -DDEMO; the environment (FERRUM_LIB_DIR, CARGO_TARGET_DIR,
# FERRUM_PLUGIN_PATH, ...) comes from the caller.
set(flags --backend cpu --dtype f32 --hidden 64 --layers 2 --q-heads 4 --kv-heads 2 --head-dim 16
          --ffn 96 --vocab 300 --prompt-len 7 --tokens 9 --seed 5 --graphs off)
function(generated out_var)
  execute_process(COMMAND ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  string(REGEX MATCH "generated: [0-9,]+" line "${out}")
  if(NOT line)
    message(FATAL_ERROR "no 'generated:' line from ${ARGN}:\n${out}\n${err}")
  endif()
  set(${out_var} "${line}" PARENT_SCOPE)
endfunction()
generated(from_demo ${DEMO} ${flags})
generated(from_rust ${CARGO} run --offline --release --quiet --manifest-path ${CRATE}/Cargo.toml
          --example demo -- ${flags})
message(STATUS "ferrum-demo: ${from_demo}")
message(STATUS "rust demo:   ${from_rust}")
if(NOT from_demo STREQUAL from_rust)
  message(FATAL_ERROR "the Rust demo generated other tokens than ferrum-demo:\n  ferrum-demo: ${from_demo}\n  rust:        ${from_rust}")
endif()
