# Which part of the tree may include which: checked at configure time and again by the
# mla_layering_check target on every build (cmake -P this file), so that a forbidden
# include fails the build. The libraries' PRIVATE link lists say
# the same thing to the linker; this check also catches header-only uses.
#
#   engine/backend/  the seam and its backends: no model, runner, scheduler or engine
#   engine/backend/cpu/, engine/backend/cuda/  never each other
#   engine/model/    the orchestration: the backend interface only, no backend
#   engine/runner/   backends only through backend_factory.h
#   engine/ (engine*.cc, scheduler/)  no backend at all: it holds a runner
#   engine/          no gRPC, protobuf, server/ or client/
#   client/          nothing under engine/ or server/
# Each rule: a path regex for the including files, then a regex of forbidden includes.
set(MLA_LAYERING_RULES
  "^engine/backend/" "^engine/(model|runner|scheduler|engine|request)"
  "^engine/backend/cpu/" "^engine/backend/cuda/"
  "^engine/backend/cuda/" "^engine/backend/cpu/"
  "^engine/model/" "^engine/(backend/(cpu|cuda)/|backend/backend_factory|runner|scheduler|engine)"
  "^engine/runner/" "^engine/(backend/(cpu|cuda)/|scheduler|engine)"
  "^engine/(engine|scheduler/)" "^engine/backend/"
  "^engine/" "^(server/|client/|grpcpp/|grpc/|google/protobuf/|proto/)"
  "^client/" "^(engine|server)/"
)

function(mla_check_layering root)
  file(GLOB_RECURSE sources RELATIVE ${root}
       ${root}/engine/*.h ${root}/engine/*.cc
       ${root}/engine/*.cu ${root}/engine/*.cuh
       ${root}/client/*.h ${root}/client/*.cc)
  set(violations "")
  foreach(file IN LISTS sources)
    file(STRINGS ${root}/${file} lines REGEX "^#include [\"<]")
    set(rules ${MLA_LAYERING_RULES})
    list(LENGTH rules n)
    math(EXPR last "${n} - 1")
    foreach(i RANGE 0 ${last} 2)
      math(EXPR j "${i} + 1")
      list(GET rules ${i} who)
      list(GET rules ${j} forbidden)
      if(NOT file MATCHES "${who}")
        continue()
      endif()
      foreach(line IN LISTS lines)
        string(REGEX REPLACE "^#include [\"<]([^\">]*)[\">].*" "\\1" header "${line}")
        if(header MATCHES "${forbidden}")
          string(APPEND violations "\n  ${file} includes ${header} (rule: ${who} must not include ${forbidden})")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(violations)
    message(FATAL_ERROR "layering violations (see cmake/Layering.cmake):${violations}")
  endif()
endfunction()

if(CMAKE_SCRIPT_MODE_FILE)
  mla_check_layering("${MLA_SOURCE_DIR}")
else()
  mla_check_layering("${PROJECT_SOURCE_DIR}")
  add_custom_target(mla_layering_check ALL
    COMMAND ${CMAKE_COMMAND} -DMLA_SOURCE_DIR=${PROJECT_SOURCE_DIR} -P
            ${PROJECT_SOURCE_DIR}/cmake/Layering.cmake
    COMMENT "Checking include layering (cmake/Layering.cmake)" VERBATIM)
endif()
