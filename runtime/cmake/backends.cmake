# Finds the backends' SDKs. Sets MTEDGE_OPENVINO_FOUND, MTEDGE_TENSORRT_FOUND and, for TensorRT,
# MTEDGE_TENSORRT_INCLUDE_DIRS / MTEDGE_TENSORRT_LIBRARIES (libnvinfer + libcudart).
foreach(_b OPENVINO TENSORRT)
  if(NOT MTEDGE_WITH_${_b} MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "MTEDGE_WITH_${_b}=${MTEDGE_WITH_${_b}}: expected AUTO, ON or OFF")
  endif()
endforeach()

# --- OpenVINO: its CMake config ships inside the openvino wheel ---------------------------------
set(MTEDGE_OPENVINO_FOUND OFF)
if(NOT MTEDGE_WITH_OPENVINO STREQUAL "OFF")
  if(NOT OpenVINO_DIR AND Python_EXECUTABLE)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c "import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), 'cmake'))"
      OUTPUT_VARIABLE _ov_dir OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _ov_rc ERROR_QUIET)
    if(_ov_rc EQUAL 0)
      set(OpenVINO_DIR "${_ov_dir}")
    endif()
  endif()
  find_package(OpenVINO QUIET COMPONENTS Runtime)
  if(OpenVINO_FOUND)
    set(MTEDGE_OPENVINO_FOUND ON)
  elseif(MTEDGE_WITH_OPENVINO STREQUAL "ON")
    message(FATAL_ERROR "MTEDGE_WITH_OPENVINO=ON but OpenVINO was not found: install the openvino wheel into "
                        "${Python_EXECUTABLE} (pip install openvino==2026.4.1) or pass -DOpenVINO_DIR=<openvino>/cmake")
  endif()
endif()

# --- TensorRT + CUDA runtime: JetPack puts them in the system paths ----------------------------
set(MTEDGE_TENSORRT_FOUND OFF)
if(NOT MTEDGE_WITH_TENSORRT STREQUAL "OFF")
  if(NOT CUDA_ROOT)
    set(CUDA_ROOT /usr/local/cuda)
  endif()
  find_path(MTEDGE_NVINFER_INCLUDE NvInferRuntime.h
    HINTS ${TENSORRT_ROOT}/include PATHS /usr/include/${CMAKE_LIBRARY_ARCHITECTURE} /usr/include /usr/local/tensorrt/include)
  find_library(MTEDGE_NVINFER_LIBRARY nvinfer
    HINTS ${TENSORRT_ROOT}/lib ${TENSORRT_ROOT}/lib64 PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/local/tensorrt/lib)
  find_path(MTEDGE_CUDA_INCLUDE cuda_runtime_api.h
    HINTS ${CUDA_ROOT}/include ${CUDA_ROOT}/targets/${CMAKE_SYSTEM_PROCESSOR}-linux/include)
  find_library(MTEDGE_CUDART_LIBRARY cudart
    HINTS ${CUDA_ROOT}/lib64 ${CUDA_ROOT}/lib ${CUDA_ROOT}/targets/${CMAKE_SYSTEM_PROCESSOR}-linux/lib)
  if(MTEDGE_NVINFER_INCLUDE AND MTEDGE_NVINFER_LIBRARY AND MTEDGE_CUDA_INCLUDE AND MTEDGE_CUDART_LIBRARY)
    set(MTEDGE_TENSORRT_FOUND ON)
    set(MTEDGE_TENSORRT_INCLUDE_DIRS ${MTEDGE_NVINFER_INCLUDE} ${MTEDGE_CUDA_INCLUDE})
    set(MTEDGE_TENSORRT_LIBRARIES ${MTEDGE_NVINFER_LIBRARY} ${MTEDGE_CUDART_LIBRARY})
  elseif(MTEDGE_WITH_TENSORRT STREQUAL "ON")
    message(FATAL_ERROR "MTEDGE_WITH_TENSORRT=ON but TensorRT/CUDA were not all found "
                        "(NvInferRuntime.h: ${MTEDGE_NVINFER_INCLUDE}, libnvinfer: ${MTEDGE_NVINFER_LIBRARY}, "
                        "cuda_runtime_api.h: ${MTEDGE_CUDA_INCLUDE}, libcudart: ${MTEDGE_CUDART_LIBRARY}); "
                        "on JetPack 6: sudo apt install nvidia-tensorrt-dev, or pass -DTENSORRT_ROOT=... -DCUDA_ROOT=...")
  endif()
endif()

if(NOT MTEDGE_OPENVINO_FOUND AND NOT MTEDGE_TENSORRT_FOUND)
  message(FATAL_ERROR "mtedge-runtime needs at least one backend and found none "
                      "(MTEDGE_WITH_OPENVINO=${MTEDGE_WITH_OPENVINO}, MTEDGE_WITH_TENSORRT=${MTEDGE_WITH_TENSORRT}). "
                      "On a Jetson install TensorRT (JetPack: sudo apt install nvidia-tensorrt-dev) or pass "
                      "-DTENSORRT_ROOT=<prefix>; on a CPU machine pip install openvino==2026.4.1 first. "
                      "pip passes these as: CMAKE_ARGS='-DTENSORRT_ROOT=...' pip install ./runtime")
endif()
message(STATUS "mtedge-runtime backends: OpenVINO ${MTEDGE_OPENVINO_FOUND}, TensorRT ${MTEDGE_TENSORRT_FOUND}")
