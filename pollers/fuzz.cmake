# fuzz.cmake - libFuzzer targets of the pollers. Included from the top-level CMakeLists.txt
# after add_subdirectory(pollers):  include(pollers/fuzz.cmake)
#
#   CC=clang cmake -S . -B build-fuzz -DSLUICE_FUZZ=ON && cmake --build build-fuzz --target fuzz_sqs
#   build-fuzz/fuzz_sqs -max_len=4096 -max_total_time=60
#
# The code under test is compiled into the fuzzer itself, with coverage and sanitizers,
# rather than linked from sluice_pollers (which is built without instrumentation).
# A clang tree with -DSLUICE_SANITIZE=ON (tests/run.sh's build-asan) builds it too, and
# broker/fuzz.cmake runs it as the ctest test fuzz.sqs.
option(SLUICE_FUZZ "Build the libFuzzer targets (clang only)" OFF)

if(SLUICE_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "SLUICE_FUZZ=ON needs clang: configure with CC=clang")
endif()
if(CMAKE_C_COMPILER_ID MATCHES "Clang" AND (SLUICE_FUZZ OR SLUICE_SANITIZE))
  add_executable(fuzz_sqs ${CMAKE_CURRENT_LIST_DIR}/poller_sqs_fuzz.c
                          ${CMAKE_CURRENT_LIST_DIR}/poller_sqs.c)
  target_compile_definitions(fuzz_sqs PRIVATE SLUICE_FUZZ_TARGET)
  target_include_directories(fuzz_sqs PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_options(fuzz_sqs PRIVATE -fsanitize=fuzzer,address,undefined
                                          -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(fuzz_sqs PRIVATE -fsanitize=fuzzer,address,undefined)
  # Whatever else poller_sqs.c calls (poller_json.c, the base) comes from the libraries; their
  # copy of poller_sqs.c is never pulled in, since the fuzzer's own defines all its symbols.
  target_link_libraries(fuzz_sqs PRIVATE sluice_pollers sluice_invoker sluice_broker_base
                                         PkgConfig::JANSSON PkgConfig::LIBEVENT PkgConfig::OPENSSL)
endif()
