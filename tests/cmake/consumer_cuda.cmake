# SPDX-License-Identifier: MIT
# Included by each consumer project. EXPECT_CUDA: minibert was configured with the CUDA backend, so minibert::cuda
# must exist. CONSUMER_CUDA: then also build a second program, consumer_cuda: by default the light one (a kernel of its
# own, minibert's CUDA declarations in scope, seconds to compile); with CONSUMER_CUDA_PROGRAM the whole backend, whose
# one .cu defines it (consumer_cuda.cu) and whose other file is plain C++ (consumer_cuda_main.cpp).
if(EXPECT_CUDA AND NOT TARGET minibert::cuda)
  message(FATAL_ERROR "minibert was built with CUDA, but this consumer sees no minibert::cuda target")
endif()
if(TARGET minibert::cuda AND CONSUMER_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80)
  endif()
  enable_language(CUDA)
  if(CONSUMER_CUDA_PROGRAM)
    add_executable(consumer_cuda ${CMAKE_CURRENT_LIST_DIR}/consumer_cuda.cu ${CMAKE_CURRENT_LIST_DIR}/consumer_cuda_main.cpp)
  else()
    add_executable(consumer_cuda ${CMAKE_CURRENT_LIST_DIR}/consumer_cuda_light.cu)
  endif()
  target_link_libraries(consumer_cuda PRIVATE minibert::cuda)
endif()
