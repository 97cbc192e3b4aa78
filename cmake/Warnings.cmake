# Project-wide warning and sanitizer flags, applied per target through mla_set_options().
function(mla_set_options target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  if(MLA_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
endfunction()

# Sanitizers apply to every target so that instrumented and plain code never mix.
if(MLA_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=address,undefined)
endif()

# libFuzzer's coverage instrumentation, likewise on every target; the fuzz targets alone
# link the fuzzer's main (tests/fuzz/CMakeLists.txt).
if(MLA_FUZZ_ENGINE STREQUAL "libfuzzer")
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>)
endif()
