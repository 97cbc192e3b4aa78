// The split-KV work description that the host plan (host/mla_decode_plan.h) produces and the
// decode kernel (mla_decode.cu) consumes. Plain structs of int32 with no CUDA or Abseil
// dependency, so that the host compiler and nvcc see the same layout.
//
// The decode grid is [num_head_tiles, num_parts]. Every CTA of part p walks the same range of
// cache blocks: sequences begin_seq..end_seq (inclusive), starting at block begin_block of
// begin_seq and stopping before block end_block of end_seq. Concatenating the blocks of all
// sequences in order and cutting the list into num_parts nearly equal runs gives the parts
// (FlashMLA's tile-scheduler metadata, computed on the host because the scheduler already
// knows every context length).
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_METADATA_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_METADATA_H_

#include <cstdint>

#ifdef __CUDACC__
#define MLA_HOST_DEVICE __host__ __device__
#else
#define MLA_HOST_DEVICE
#endif

namespace mla::cuda {

// Cache tokens per block: FlashMLA's paged layout. The decode kernel loads one block per
// step, so this is a compile-time constant there and a checked parameter elsewhere.
inline constexpr int kMlaBlockSize = 64;
// Query rows (s_q × heads, folded as FlashMLA does) that one decode CTA handles.
inline constexpr int kMlaDecodeRowsPerCta = 16;

// One part of the key range. 32 bytes so that a part is one aligned load on the device.
struct MlaDecodePart {
  int32_t begin_seq = 0;
  int32_t begin_block = 0;
  int32_t end_seq = -1;     // Inclusive. An empty part has end_seq < begin_seq.
  int32_t end_block = 0;    // Exclusive, counted in end_seq's blocks.
  int32_t begin_split = 0;  // Split index of begin_seq's piece (earlier parts hold the rest).
  int32_t reserved[3] = {0, 0, 0};
};
static_assert(sizeof(MlaDecodePart) == 32, "MlaDecodePart is read as 32 bytes on the device");

// The block range [block_begin, block_end) of sequence `seq` that a part covers, and which
// split of that sequence it is. `seq_blocks` is the sequence's block count. Shared by the
// kernel and the host tests so that both read the metadata the same way.
struct MlaDecodePieceRange {
  int32_t block_begin;
  int32_t block_end;
  int32_t split;
};

MLA_HOST_DEVICE inline MlaDecodePieceRange MlaPieceOf(const MlaDecodePart& part, int32_t seq,
                                                      int32_t seq_blocks) {
  MlaDecodePieceRange r;
  r.block_begin = seq == part.begin_seq ? part.begin_block : 0;
  r.block_end = seq == part.end_seq ? part.end_block : seq_blocks;
  r.split = seq == part.begin_seq ? part.begin_split : 0;
  return r;
}

}  // namespace mla::cuda

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_METADATA_H_
