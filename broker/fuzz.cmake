# fuzz.cmake - libFuzzer targets of the broker's decoders (style.md point 13), and the ctest
# tests that run every fuzzer of the project. Included from the top-level CMakeLists.txt right
# after pollers/fuzz.cmake:  include(broker/fuzz.cmake)
#
# The fuzzers are built with clang only, in the sanitizer tree (-DSLUICE_SANITIZE=ON, the
# build-asan tree of tests/run.sh) or on request (-DSLUICE_FUZZ=ON); a gcc tree builds none.
#   fuzz_config   br_config_parse_buffer   broker_config_fuzz.c   seeds tests/fuzz/config/
#   fuzz_store    br_store_frame_decode,   broker_store_fuzz.c    seeds tests/fuzz/store/
#                 br_store_record_decode
# The code under test is compiled into the fuzzer itself, with coverage and sanitizers, rather
# than linked from sluice_broker / sluice_broker_base (which get no coverage instrumentation).
#
# Tests (ctest -R fuzz): fuzz.config, fuzz.store, fuzz.sqs (pollers/fuzz.cmake) and
# fuzz.runtime (examples/CMakeLists.txt), one per fuzzer that exists. Each copies its seed
# folder (if any) to <build>/fuzz-work/<name>/ and runs
#   <fuzzer> -max_total_time=10 -rss_limit_mb=1024 <the copy>
# which replays every seed and then mutates for 10 s. New corpus files go to the copy, never
# to the source tree; a crashing input is kept as <build>/fuzz-artifacts/<name>-crash-<sha1>.
# By hand, for longer:  cp -r tests/fuzz/config /tmp/c && build-asan/fuzz_config /tmp/c
#
# This file is also the tests' runner script: cmake -DFUZZER=... -DNAME=... -DCORPUS=...
# -DWORK=... -DARTIFACTS=... -P broker/fuzz.cmake (CORPUS may be empty: start from nothing).

if(CMAKE_SCRIPT_MODE_FILE)
  # ---- runner (script mode) ----------------------------------------------------------------
  foreach(v FUZZER NAME WORK ARTIFACTS)
    if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
      message(FATAL_ERROR "fuzz.cmake: -D${v}= is required")
    endif()
  endforeach()
  set(run_dir ${WORK}/${NAME})
  file(REMOVE_RECURSE ${run_dir})
  file(MAKE_DIRECTORY ${run_dir} ${ARTIFACTS})
  if(NOT "${CORPUS}" STREQUAL "")
    file(GLOB seeds LIST_DIRECTORIES false ${CORPUS}/*)
    if(NOT seeds)
      message(FATAL_ERROR "fuzz.cmake: no seed files in ${CORPUS}")
    endif()
    file(COPY ${seeds} DESTINATION ${run_dir})
  endif()
  execute_process(
    COMMAND ${FUZZER} -max_total_time=10 -rss_limit_mb=1024 -print_final_stats=1
            -artifact_prefix=${ARTIFACTS}/${NAME}- ${run_dir}
    RESULT_VARIABLE rc TIMEOUT 120)
  file(REMOVE_RECURSE ${run_dir})
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "fuzz.cmake: ${NAME}: ${FUZZER} failed (${rc}); "
                        "crashing inputs, if any: ${ARTIFACTS}/${NAME}-*")
  endif()
  return()
endif()

# ---- targets (configure mode) --------------------------------------------------------------
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang" OR NOT (SLUICE_SANITIZE OR SLUICE_FUZZ))
  return()
endif()

# One fuzzer: sources compiled with the fuzzer's instrumentation, libraries linked as they are.
function(sl_broker_fuzzer name)
  cmake_parse_arguments(PARSE_ARGV 1 F "" "" "SOURCES;LIBS")
  add_executable(${name} ${F_SOURCES})
  target_compile_definitions(${name} PRIVATE SLUICE_FUZZ_TARGET)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined
                                         -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE ${F_LIBS})
endfunction()

set(SL_BROKER_DIR ${CMAKE_CURRENT_LIST_DIR})
# The rest of the configuration's dependencies (pl_mapping_validate, inv_function_config_clear,
# sl_log_escape) come from the module libraries; sluice_broker itself is not linked, so its
# copy of broker_config.c is never pulled in.
sl_broker_fuzzer(fuzz_config
  SOURCES ${SL_BROKER_DIR}/broker_config_fuzz.c ${SL_BROKER_DIR}/broker_config.c
  LIBS sluice_pollers sluice_invoker sluice_broker_base PkgConfig::YAML PkgConfig::JANSSON)
# The store's own copies (broker_store*.c) win over the ones in sluice_broker_base (which then
# stay unlinked).
sl_broker_fuzzer(fuzz_store
  SOURCES ${SL_BROKER_DIR}/broker_store_fuzz.c ${SL_BROKER_DIR}/broker_store.c
          ${SL_BROKER_DIR}/broker_store_codec.c ${SL_BROKER_DIR}/broker_store_index.c
          ${SL_BROKER_DIR}/broker_store_writer.c
  LIBS sluice_broker_base PkgConfig::MSGPACK PkgConfig::LIBEVENT Threads::Threads)

# The tests are added once the whole project is read (runtime-fuzz is defined later, in
# examples/), for whichever fuzzers exist. enable_testing() is called in the same directory.
function(sl_fuzz_tests)
  set(fuzzers "config|fuzz_config|${SL_BROKER_DIR}/../tests/fuzz/config"
              "store|fuzz_store|${SL_BROKER_DIR}/../tests/fuzz/store"
              "sqs|fuzz_sqs|" "runtime|runtime-fuzz|")
  foreach(f ${fuzzers})
    string(REPLACE "|" ";" f "${f}")
    list(GET f 0 name)
    list(GET f 1 target)
    list(GET f 2 corpus)
    if(NOT TARGET ${target})
      continue()
    endif()
    if(NOT "${corpus}" STREQUAL "")
      get_filename_component(corpus ${corpus} ABSOLUTE)
    endif()
    add_test(NAME fuzz.${name}
             COMMAND ${CMAKE_COMMAND} -DFUZZER=$<TARGET_FILE:${target}> -DNAME=${name}
                     -DCORPUS=${corpus} -DWORK=${CMAKE_BINARY_DIR}/fuzz-work
                     -DARTIFACTS=${CMAKE_BINARY_DIR}/fuzz-artifacts -P ${SL_BROKER_DIR}/fuzz.cmake)
    set_tests_properties(fuzz.${name} PROPERTIES TIMEOUT 180 LABELS fuzz)
  endforeach()
endfunction()
cmake_language(DEFER CALL sl_fuzz_tests)
