// The lane arithmetic of the tensor-core MLA decode kernels: where each lane finds its
// mma.m16n8k16 fragments in shared memory and where its accumulators land, and PTX's
// fragment layouts that this must reproduce; the ring and 64-row kernels' swizzled rows
// and ldmatrix addressing; the wgmma build's 128-byte-swizzle tiles, descriptors and
// shared-memory sizes. Shared by the kernels and the CPU tests that replay them lane by
// lane (tests/engine/cuda_host/mla_decode_mma_rule_test.cc). Plain C++ with no CUDA
// dependency, so that the host compiler and nvcc see the same code.
//
// Storage of mla_decode_mma.cu: q, keys and p are rows of bf16 pairs (32-bit words; the
// lower index in the low half), `stride` words per row. A k-step covers 16 values = 8
// words of a row.
#ifndef MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_RULE_H_
#define MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_RULE_H_

#ifdef __CUDACC__
#define MLA_MMA_FN __host__ __device__ constexpr inline
#else
#define MLA_MMA_FN constexpr inline
#endif

namespace mla::cuda {

// Words per stored row of `values` bf16 values: at least values / 2, ≡ 4 mod 8. Lanes
// (g, t) reading word g·stride + t then hit 32 different banks (g·stride mod 32 is a
// distinct multiple of 4 for each g), and for B = V, the pairs of lanes that share a
// word aside, 16 different ones.
MLA_MMA_FN int MmaRowStrideWords(int values) { return (values / 2 + 7) / 8 * 8 + 4; }

// lane = 4·g + t (PTX's groupID and threadID_in_group).
MLA_MMA_FN int MmaGroup(int lane) { return lane >> 2; }
MLA_MMA_FN int MmaThreadInGroup(int lane) { return lane & 3; }

// --- PTX's layouts for m16n8k16 with 16-bit inputs and fp32 accumulators ---------------
// A (16 × 16, row-major): element e (0..7; register e / 2, half e % 2) of a lane.
MLA_MMA_FN int PtxARow(int lane, int e) { return MmaGroup(lane) + ((e & 2) != 0 ? 8 : 0); }
MLA_MMA_FN int PtxACol(int lane, int e) {
  return 2 * MmaThreadInGroup(lane) + (e & 1) + (e >= 4 ? 8 : 0);
}
// B (16 × 8, column-major): element e (0..3) of a lane.
MLA_MMA_FN int PtxBRow(int lane, int e) {  // k
  return 2 * MmaThreadInGroup(lane) + (e & 1) + (e >= 2 ? 8 : 0);
}
MLA_MMA_FN int PtxBCol(int lane, int /*e*/) { return MmaGroup(lane); }  // n
// C / D (16 × 8): accumulator i (0..3) of a lane.
MLA_MMA_FN int PtxCRow(int lane, int i) { return MmaGroup(lane) + (i >= 2 ? 8 : 0); }
MLA_MMA_FN int PtxCCol(int lane, int i) { return 2 * MmaThreadInGroup(lane) + (i & 1); }

// --- Where the kernel reads its fragments ----------------------------------------------
// A register r (0..3) from a row-major matrix of bf16 pairs (q for the scores, p for the
// output): the word index for the k-step starting at word k_word.
MLA_MMA_FN int MmaAWord(int lane, int r, int stride, int k_word) {
  const int row = MmaGroup(lane) + ((r & 1) != 0 ? 8 : 0);
  return row * stride + k_word + MmaThreadInGroup(lane) + ((r & 2) != 0 ? 4 : 0);
}
// B register r (0..1) when B's columns are rows of the stored matrix (the scores: B = Kᵀ,
// column n = key row n0 + n): one word, two consecutive k.
MLA_MMA_FN int MmaBWordOfRows(int lane, int r, int stride, int n0, int k_word) {
  return (n0 + MmaGroup(lane)) * stride + k_word + MmaThreadInGroup(lane) + (r != 0 ? 4 : 0);
}
// B element e (0..3) when B's rows are rows of the stored matrix (the output: B = V, row k
// = key k0 + k, column n = latent column c0 + n): the bf16 index, 2·stride per row.
MLA_MMA_FN int MmaBValueOfColumns(int lane, int e, int stride, int k0, int c0) {
  return (k0 + PtxBRow(lane, e)) * 2 * stride + c0 + PtxBCol(lane, e);
}

// --- B = V through ldmatrix.x4.trans (the k-split variant) --------------------------------
// PTX's ldmatrix .m8n8 .x4 .trans: lanes 8i .. 8i + 7 give the addresses of rows 0 .. 7 of
// matrix i (8 b16 values, 16 bytes each), and register i of a lane receives, transposed,
// rows 2·t and 2·t + 1 (low half first) of matrix i's column g.
MLA_MMA_FN int PtxLdmatrixTransRow(int lane, int half) { return 2 * MmaThreadInGroup(lane) + half; }
MLA_MMA_FN int PtxLdmatrixTransCol(int lane) { return MmaGroup(lane); }
// The row each lane addresses when the kernel loads B = V (row k = key k0 + k, column n =
// latent column c0 + n) for the two n-tiles at columns c0 and c0 + 8 over a k-step's 16
// keys: matrices 0 and 1 are keys 0 .. 7 and 8 .. 15 at columns c0 .. c0 + 7 (B's registers
// 0 and 1 of the first tile), matrices 2 and 3 the same keys at c0 + 8 .. c0 + 15.
MLA_MMA_FN int MmaVKeyOfLane(int lane) { return lane & 15; }
MLA_MMA_FN int MmaVColumnOfLane(int lane) { return 8 * (lane >> 4); }

// --- The ring kernel (mla_decode_ring.cu): unpadded key rows, 16-byte chunks swizzled ------
// A key row of `values` bf16 values takes RingRowChunks(values) chunks of 16 bytes (8
// values each), rounded up to a multiple of 8; logical chunk c of key k is stored at chunk
// c ^ (k mod 8) of its row. The 8 rows one ldmatrix phase reads (8 consecutive keys, one
// logical chunk) then sit in 8 different groups of 4 banks, without the padding words the
// other kernels spend (the ring's three blocks need the room).
MLA_MMA_FN int RingRowChunks(int values) { return (values / 8 + 7) / 8 * 8; }
// The first word of key `key`'s logical chunk `chunk` in a block of rows of `row_chunks`.
MLA_MMA_FN int RingChunkWord(int key, int chunk, int row_chunks) {
  return 4 * (key * row_chunks + (chunk ^ (key & 7)));
}
// PTX's ldmatrix .m8n8 .x4 without .trans: lanes 8i .. 8i + 7 give the addresses of rows
// 0 .. 7 of matrix i, and register i of a lane receives row g, values 2·t and 2·t + 1 (low
// half first) of matrix i.
MLA_MMA_FN int PtxLdmatrixRow(int lane) { return MmaGroup(lane); }
MLA_MMA_FN int PtxLdmatrixCol(int lane, int half) { return 2 * MmaThreadInGroup(lane) + half; }
// The row each lane addresses when the ring kernel loads B = Kᵀ for keys n0 .. n0 + 7 over
// the k-steps ks and ks + 1: key n0 + (lane mod 8) at logical chunk 2·ks + lane / 8, so that
// matrices 0 .. 3 are chunks 2·ks .. 2·ks + 3 and registers 0, 1 are B's registers of k-step
// ks, registers 2, 3 those of k-step ks + 1.
MLA_MMA_FN int RingKKeyOfLane(int lane) { return lane & 7; }
MLA_MMA_FN int RingKChunkOfLane(int lane) { return lane >> 3; }
// The ring kernel's shared memory for rows of `values` values: kRingStages blocks of
// kRingKeys rows (with an FP8 cache: kRingStages blocks of its rows as stored,
// `fp8_row_bytes` each, and one block of bf16 rows they are dequantized into), then p (16
// rows of kRingPStride words), the scores (16 rows of kRingScoreStride floats) and the
// rows' running max, sum and alpha.
inline constexpr int kRingStages = 3;
inline constexpr int kRingKeys = 64;
inline constexpr int kRingRows = 16;
inline constexpr int kRingPStride = 36;      // ≡ 4 (mod 8): conflict-free A fragments
inline constexpr int kRingScoreStride = 72;  // ≡ 8 (mod 32): conflict-free pair stores
MLA_MMA_FN int RingStageWords(int values) { return kRingKeys * RingRowChunks(values) * 4; }
MLA_MMA_FN int RingFp8StageWords(int fp8_row_bytes) { return kRingKeys * fp8_row_bytes / 4; }
MLA_MMA_FN int RingSharedBytes(int values, int fp8_row_bytes = 0) {
  const int blocks = fp8_row_bytes == 0
                         ? kRingStages * RingStageWords(values)
                         : kRingStages * RingFp8StageWords(fp8_row_bytes) + RingStageWords(values);
  return 4 * (blocks + kRingRows * kRingPStride + kRingRows * kRingScoreStride + 3 * kRingRows);
}

// --- The 64-row kernel (mla_decode_rows64.cu): q as A fragments through ldmatrix.x4 -------
// A 16 × 16 A tile (rows r0 .., k-step ks) from rows stored like the ring's keys: lane l
// addresses row r0 + (l mod 16) at logical chunk 2·ks + l / 16, so that matrices 0 .. 3
// are (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15):
// registers 0 .. 3 are A's, in PTX's order.
MLA_MMA_FN int Rows64ARowOfLane(int lane) { return lane & 15; }
MLA_MMA_FN int Rows64AChunkOfLane(int lane) { return lane >> 4; }
// Its shared memory for rows of `values` values: the q tile (kRows64Rows rows, stored like
// a block of keys), kRows64Stages blocks of keys, p (kRows64Rows rows of kRingPStride
// words) and each half's row maxima (2 × kRows64Rows floats).
inline constexpr int kRows64Rows = 64;
inline constexpr int kRows64Stages = 2;
// Where lane (g, t) of the warp for row group `group` and half `half` stores p of its
// scores' n-tile j, accumulators 2h and 2h + 1 (row 16·group + g + 8h, keys 32·half + 8j +
// 2t and + 1): p's rows of kRingPStride words hold the keys in pairs.
MLA_MMA_FN int Rows64PWord(int lane, int group, int half, int j, int h) {
  return (16 * group + MmaGroup(lane) + 8 * h) * kRingPStride + 16 * half + 4 * j +
         MmaThreadInGroup(lane);
}
MLA_MMA_FN int Rows64SharedBytes(int values) {
  return 4 * ((1 + kRows64Stages) * RingStageWords(values) + kRows64Rows * kRingPStride +
              2 * kRows64Rows);
}

// --- The wgmma variant of the 64-row kernel (mla_decode_rows64_wgmma.cu) ----------------
// Its q tile and key blocks are 64 rows in PTX's canonical 128-byte-swizzle layout, which
// wgmma reads by descriptor: column block b (values 64b .. 64b + 63) of all 64 rows is one
// 8 KB run of 128-byte rows, and 16-byte chunk c of a row sits at chunk c ^ (row mod 8) of
// it (Swizzle<3, 4, 3> on 1024-byte aligned runs). ldmatrix reads 8 consecutive rows of one
// chunk: 8 different groups of 4 banks.
inline constexpr int kSw128RowBytes = 128;
inline constexpr int kSw128BlockBytes = 64 * kSw128RowBytes;  // one column block, 64 rows
MLA_MMA_FN int Sw128ChunkWord(int row, int chunk) {
  return (chunk / 8) * (kSw128BlockBytes / 4) + row * (kSw128RowBytes / 4) +
         4 * ((chunk % 8) ^ (row & 7));
}
// Words of 64 rows of `values` values (whole column blocks).
MLA_MMA_FN int Sw128TileWords(int values) { return (values + 63) / 64 * (kSw128BlockBytes / 4); }
// The byte offset of k-step ks (values 16·ks .. 16·ks + 15) of a K-major operand's first
// row: its column block, then 32 bytes per k-step inside the 128-byte row (the hardware
// applies the swizzle to the addresses it forms, so the start may sit inside a row).
MLA_MMA_FN int Sw128KStepBytes(int ks) { return (ks / 4) * kSw128BlockBytes + (ks % 4) * 32; }
// PTX's wgmma shared-memory matrix descriptor: start address, leading and stride
// dimension byte offsets (each >> 4 in 14 bits), base offset 0 (runs start 1024-byte
// aligned), swizzle mode 1 (128 bytes) in bits 62-63.
MLA_MMA_FN unsigned long long WgmmaDescriptor(unsigned start, unsigned lbo, unsigned sbo) {
  return (static_cast<unsigned long long>((start & 0x3FFFF) >> 4)) |
         (static_cast<unsigned long long>((lbo & 0x3FFFF) >> 4) << 16) |
         (static_cast<unsigned long long>((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}
// K-major operands (q for the scores, A; the keys, B): 8-row groups 1024 bytes apart (the
// stride offset), no leading offset for swizzled K-major layouts (PTX: assumed 1).
inline constexpr unsigned kWgmmaKMajorLbo = 16;
inline constexpr unsigned kWgmmaKMajorSbo = 8 * kSw128RowBytes;
// V as an N-major B (latent columns contiguous): the next 64 columns a column block
// away (leading offset), the next 8 keys 1024 bytes away (stride offset).
inline constexpr unsigned kWgmmaNMajorLbo = kSw128BlockBytes;
inline constexpr unsigned kWgmmaNMajorSbo = 8 * kSw128RowBytes;
// The operands' start bytes in their tiles: the scores' B (keys 32·half .. + 31) at k-step
// ks, and the output's B (V at keys 16·ks .., latent columns 256·half ..).
MLA_MMA_FN int WgmmaKeysStartBytes(int half, int ks) {
  return kSw128RowBytes * 32 * half + Sw128KStepBytes(ks);
}
MLA_MMA_FN int WgmmaVStartBytes(int half, int ks) {
  return (256 * half / 64) * kSw128BlockBytes + 16 * ks * kSw128RowBytes;
}
// Its shared memory at 64 rows of `values`: the q tile, kRows64Stages key blocks, p, the
// halves' row maxima, and 1024 bytes to align the runs.
MLA_MMA_FN int Rows64WgmmaSharedBytes(int values) {
  return 4 * ((1 + kRows64Stages) * Sw128TileWords(values) + kRows64Rows * kRingPStride +
              2 * kRows64Rows) +
         1024;
}

}  // namespace mla::cuda

#undef MLA_MMA_FN

#endif  // MLA_ENGINE_BACKEND_CUDA_KERNELS_MLA_DECODE_MMA_RULE_H_
