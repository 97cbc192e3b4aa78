// The stream type for kernel launch declarations, without including CUDA headers: headers
// under kernels/ stay plain C++ so that host code and CPU tests can include them.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_CUDA_STREAM_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_CUDA_STREAM_H_

struct CUstream_st;  // cudaStream_t is CUstream_st*.

namespace mla::cuda {

using CudaStream = CUstream_st*;  // nullptr: the legacy default stream.

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_CUDA_STREAM_H_
