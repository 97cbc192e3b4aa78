# MLA_CUDA=AUTO enables the CUDA language only when nvcc is found, so that machines
# without the toolkit still build the complete CPU engine.
set(MLA_HAVE_CUDA OFF)
if(NOT MLA_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER)
    find_program(MLA_NVCC nvcc HINTS /usr/local/cuda/bin ENV CUDA_HOME PATH_SUFFIXES bin)
    if(MLA_NVCC)
      set(CMAKE_CUDA_COMPILER ${MLA_NVCC})
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90)
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no CUDA20 dialect for nvcc.
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    find_package(CUDAToolkit REQUIRED)
    set(MLA_HAVE_CUDA ON)
  elseif(MLA_CUDA STREQUAL "ON")
    message(FATAL_ERROR "MLA_CUDA=ON but no CUDA compiler was found (looked for nvcc)")
  endif()
endif()
message(STATUS "MLA CUDA backend: ${MLA_HAVE_CUDA}")

# Which build of the CUDA backend an executable links (mla_backend_factory and mla_device
# name this): the device's, mla_cuda, or, for an executable whose MLA_CUDA_EMULATED property
# is set, the same sources built for the CPU emulator (tests/engine/cuda_emu), so that the
# engine and the server run their CUDA paths in CI. The property is read on the executable
# being linked.
set(MLA_CUDA_IMPLEMENTATION
    "$<IF:$<BOOL:$<TARGET_PROPERTY:MLA_CUDA_EMULATED>>,mla_cuda_backend_emulated,mla_cuda>")
