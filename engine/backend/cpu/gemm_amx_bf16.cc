// AMX-BF16 GEMM for bf16 weights and 8 or more tokens (prefill chunks, the experts' tokens,
// decode batches). One TDPBF16PS multiplies a 16 × 32 tile of bf16 values by a 32 × 16
// tile of bf16 pairs into 16 × 16 fp32 sums: 8,192 multiply-adds per instruction, where one
// vdpbf16ps does 32. The numerics are those of the AVX512_BF16 level (activations rounded
// to bf16 once per call, products exact in fp32, fp32 sums), except that TDPBF16PS treats
// bf16 denormal inputs as zero and flushes denormal sums; denormal activations or weights
// (below 1.2e-38) contribute nothing to a linear layer.
//
// The weights are the A operand, read in place: an A tile is 16 rows × 32 columns of a
// row-major matrix, exactly the [out, in] layout of a checkpoint's bf16 weight, so the
// weights are never packed (packing them per call cost a third of the kernel's time, and
// most of it for the experts' ~48 tokens each). The activations are the B operand, which
// wants column pairs interleaved across 16 tokens (gemm_bf16_panel.h's panels): x is
// rounded and packed once per call, 2 bytes per activation against 2 · rows multiply-adds
// on it. Each C tile then holds 16 rows × 16 tokens, stored through a 16 × 16 transpose.
//
// Per thread and its rows [r_begin, r_end), tokens in blocks of kTokenBlock:
//  - the rows go in macro blocks of up to kL2WeightBytes of weights, which stay in L2
//    while every 32-token group passes over them; the first group reads them from memory;
//  - each 32-row × 32-token block keeps its four C tiles in tile registers over the whole
//    depth (two A loads and two B loads feed four TDPBF16PS per 32 columns);
//  - edges: a 16-row half with fewer than 16 rows is copied into a zero-padded scratch
//    (a tile load would read past the view), and when cols is not a multiple of 32 the
//    last 32-column step of each half reads a zero-padded copy of those columns (a tile
//    load would read the next row's values, and 0 · NaN is NaN). Tokens past n are zero
//    columns of the packed x.
//
// Few tokens do not fill the tiles: n < kAmxMinTokens goes to the AVX512_BF16 dot tiles,
// which stream the weights (gemm_bench --isas=avx512_bf16,amx_bf16, docs/BENCHMARKS.md:
// level at 4 tokens, ahead from 8).
//
// Tiles are per thread state: each call loads the configuration and releases the tiles
// before it returns, so a thread holds no AMX state between calls (a context switch then
// saves none). Linux grants the tile data state per process on request; cpu_features.cc
// asks before it reports the level as supported.
#include "engine/backend/cpu/simd_avx512.h"  // first: see there

#include "engine/backend/cpu/gemm.h"
#include "engine/backend/cpu/gemm_bf16_panel.h"
#include "engine/backend/cpu/gemm_kernels.h"

#if defined(MLA_HAVE_AVX512_KERNELS)

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#define MLA_TARGET_AMX \
  __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))

namespace mla::cpu::internal {
namespace {

constexpr int64_t kTokenBlock = 512;                 // Tokens packed per pass.
constexpr int64_t kCols = 32;                        // Columns per tile step (64 bytes of bf16).
constexpr int kTile = 16;                            // Rows and tokens per tile.
constexpr int64_t kPanelDwords = kCols / 2 * kTile;  // One B tile: 16 pairs × 16 tokens.
// Weights per macro block of rows, kept in L2 (2 MiB per core on Sapphire Rapids) beside
// a 32-token group of packed x: 128 rows at 2,048 columns.
constexpr int64_t kL2WeightBytes = 512 << 10;
constexpr int64_t kMaxMacroRows = 256;

inline int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// The hardware's tile configuration (palette 1): all eight tiles 16 rows × 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64);

MLA_TARGET_AMX void ConfigureTiles() {
  TileConfig config;
  std::memset(&config, 0, sizeof(config));
  config.palette = 1;
  for (int t = 0; t < 8; ++t) {
    config.colsb[t] = 64;
    config.rows[t] = kTile;
  }
  _tile_loadconfig(&config);
}

// A 64-byte aligned per-thread buffer of at least `count` elements; grows to the largest
// call seen, so steady-state calls do not allocate.
template <typename T, int kSlot>
T* Scratch(size_t count) {
  thread_local std::vector<T> buffer;
  const size_t pad = 64 / sizeof(T);
  if (buffer.size() < count + pad) buffer.resize(count + pad);
  const uintptr_t at = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<T*>((at + 63) & ~uintptr_t{63});
}

// 16 weight rows as A tiles: steps [0, full) load 32 columns from `base` (rows `stride`
// bytes apart); the tail step, if any, loads from `tail` (rows `tail_stride` bytes apart).
struct RowHalf {
  const bf16_t* base = nullptr;
  int64_t stride = 0;
  const bf16_t* tail = nullptr;
  int64_t tail_stride = 0;
  int64_t full = 0;  // full steps; step `full`, when there is one, is the tail

  const bf16_t* Tile(int64_t s) const { return s < full ? base + s * kCols : tail; }
  int64_t Stride(int64_t s) const { return s < full ? stride : tail_stride; }
};

// The A source for rows [r, r + valid) of w. Full halves read w in place with a copy of
// the tail columns in tail_buf (16 × 32); partial ones read a zero-padded copy in
// copy_buf (16 rows of `padded` values).
RowHalf PrepareHalf(const MatrixView& w, int64_t r, int valid, int64_t full_steps, int64_t padded,
                    bf16_t* tail_buf, bf16_t* copy_buf) {
  const bf16_t* base = static_cast<const bf16_t*>(w.data) + r * w.row_stride;
  const int64_t tail_cols = w.cols - full_steps * kCols;
  RowHalf half;
  half.full = full_steps;
  if (valid == kTile) {
    half.base = base;
    half.stride = w.row_stride * static_cast<int64_t>(sizeof(bf16_t));
    if (tail_cols > 0) {
      std::fill_n(tail_buf, kTile * kCols, bf16_t{0});
      for (int j = 0; j < kTile; ++j) {
        std::memcpy(tail_buf + j * kCols, base + j * w.row_stride + full_steps * kCols,
                    tail_cols * sizeof(bf16_t));
      }
      half.tail = tail_buf;
      half.tail_stride = kCols * sizeof(bf16_t);
    }
    return half;
  }
  std::fill_n(copy_buf, kTile * padded, bf16_t{0});
  for (int j = 0; j < valid; ++j) {
    std::memcpy(copy_buf + j * padded, base + j * w.row_stride, w.cols * sizeof(bf16_t));
  }
  half.base = copy_buf;
  half.stride = padded * static_cast<int64_t>(sizeof(bf16_t));
  half.tail = copy_buf + full_steps * kCols;
  half.tail_stride = half.stride;
  return half;
}

// y[t, r0 + r] = c[r][t] for t < tokens, r < rows: a stored C tile (16 rows × 16 tokens)
// transposed into y's token-major rows.
MLA_TARGET_AMX void StoreTransposed(const float* c, float* y, int64_t y_stride, int tokens,
                                    int rows) {
  __m512i v[16];
#pragma GCC unroll 16
  for (int r = 0; r < 16; ++r) v[r] = _mm512_load_si512(c + r * kTile);
  Transpose16x16(v);
  const __mmask16 mask = avx512::Mask16(rows);
  for (int t = 0; t < tokens; ++t) {
    _mm512_mask_storeu_ps(y + t * y_stride, mask, _mm512_castsi512_ps(v[t]));
  }
}

// Stores C tile `tile` (GCC's tile intrinsics take the tile number as a literal, hence a
// macro) for `tokens` × `rows` of y at `y`.
#define MLA_STORE_C_TILE(tile, y, tokens, rows)          \
  do {                                                   \
    _tile_stored(tile, c, kTile * sizeof(float));        \
    StoreTransposed(c, (y), y_stride, (tokens), (rows)); \
  } while (false)

// y[t, r] = Σ_c x[t, c] · w[r, c] for up to 32 rows (halves a0, a1) × up to 32 tokens
// (packed x panels b0, b1) over `steps` 32-column steps (the halves' full steps, plus
// their tail step when cols is not a multiple of 32). kTwoRows / kTwoTok: the second 16
// rows / tokens exist. C tiles 0..3 (rows half × tokens half), A tiles 4 and 5, B tiles
// 6 and 7.
template <bool kTwoRows, bool kTwoTok>
MLA_TARGET_AMX void Block(const RowHalf& a0, const RowHalf& a1, const uint32_t* b0,
                          const uint32_t* b1, int64_t steps, float* y, int64_t y_stride, int rows,
                          int tokens) {
  _tile_zero(0);
  if constexpr (kTwoTok) _tile_zero(1);
  if constexpr (kTwoRows) _tile_zero(2);
  if constexpr (kTwoRows && kTwoTok) _tile_zero(3);
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a0.Tile(s), a0.Stride(s));
    _tile_loadd(6, b0 + s * kPanelDwords, 64);
    if constexpr (kTwoRows) _tile_loadd(5, a1.Tile(s), a1.Stride(s));
    if constexpr (kTwoTok) _tile_loadd(7, b1 + s * kPanelDwords, 64);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (kTwoTok) _tile_dpbf16ps(1, 4, 7);
    if constexpr (kTwoRows) _tile_dpbf16ps(2, 5, 6);
    if constexpr (kTwoRows && kTwoTok) _tile_dpbf16ps(3, 5, 7);
  }
  alignas(64) float c[kTile * kTile];
  const int r0 = std::min(rows, kTile);
  const int t0 = std::min(tokens, kTile);
  MLA_STORE_C_TILE(0, y, t0, r0);
  if constexpr (kTwoTok) MLA_STORE_C_TILE(1, y + kTile * y_stride, tokens - kTile, r0);
  if constexpr (kTwoRows) MLA_STORE_C_TILE(2, y + kTile, t0, rows - kTile);
  if constexpr (kTwoRows && kTwoTok) {
    MLA_STORE_C_TILE(3, y + kTile * y_stride + kTile, tokens - kTile, rows - kTile);
  }
}

// y[t, r] for the 16 rows of one half (a) × 33-48 tokens (packed x panels b, b + step,
// b + 2 · step) in one pass: one A load feeds three TDPBF16PS, so each weight row is read
// from memory once with nothing left to reread from L2. The experts of a 512-token chunk
// get ~48 tokens each: their GEMMs stream weights from memory, and the 32 + 16 split of
// Block reread every row once more. C tiles 0..2, A tile 4, B tiles 5..7.
MLA_TARGET_AMX void BlockThreeTok(const RowHalf& a, const uint32_t* b, int64_t panel_dwords,
                                  int64_t steps, float* y, int64_t y_stride, int rows, int tokens) {
  const uint32_t* b1 = b + panel_dwords;
  const uint32_t* b2 = b + 2 * panel_dwords;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  for (int64_t s = 0; s < steps; ++s) {
    _tile_loadd(4, a.Tile(s), a.Stride(s));
    _tile_loadd(5, b + s * kPanelDwords, 64);
    _tile_loadd(6, b1 + s * kPanelDwords, 64);
    _tile_loadd(7, b2 + s * kPanelDwords, 64);
    _tile_dpbf16ps(0, 4, 5);
    _tile_dpbf16ps(1, 4, 6);
    _tile_dpbf16ps(2, 4, 7);
  }
  alignas(64) float c[kTile * kTile];
  MLA_STORE_C_TILE(0, y, kTile, rows);
  MLA_STORE_C_TILE(1, y + kTile * y_stride, kTile, rows);
  MLA_STORE_C_TILE(2, y + 2 * kTile * y_stride, tokens - 2 * kTile, rows);
}

#undef MLA_STORE_C_TILE

using BlockFn = void (*)(const RowHalf&, const RowHalf&, const uint32_t*, const uint32_t*, int64_t,
                         float*, int64_t, int, int);
// kBlock[two rows][two tokens].
constexpr BlockFn kBlock[2][2] = {{Block<false, false>, Block<false, true>},
                                  {Block<true, false>, Block<true, true>}};

// Rounds tokens [0, nb) of x to bf16 and packs them into B panels of 16 tokens each
// (panel g at panels + g · panel_dwords; tokens past nb are zeros).
MLA_TARGET_AMX void PackTokens(const float* x, int64_t x_stride, int64_t nb, int64_t cols,
                               int64_t padded, bf16_t* rows16, uint32_t* panels,
                               int64_t panel_dwords) {
  for (int64_t t0 = 0; t0 < nb; t0 += kTile) {
    const int valid = static_cast<int>(std::min<int64_t>(kTile, nb - t0));
    for (int t = 0; t < valid; ++t) {
      avx512::RoundRowToBf16(x + (t0 + t) * x_stride, cols, padded, rows16 + t * padded);
    }
    PackPanel<1>(rows16, padded, 0, valid, 0, cols, panels + (t0 / kTile) * panel_dwords);
  }
}

MLA_TARGET_AMX void GemmRowsAmxBf16(const float* x, int64_t x_stride, int64_t n,
                                    const MatrixView& w, int64_t r_begin, int64_t r_end, float* y,
                                    int64_t y_stride) {
  if (n < kAmxMinTokens || w.cols == 0) {
    GemmRowsAvx512Bf16Fn()(x, x_stride, n, w, r_begin, r_end, y, y_stride);
    return;
  }
  const int64_t padded = RoundUp(w.cols, kCols);
  const int64_t full_steps = w.cols / kCols;
  const int64_t steps = padded / kCols;  // full_steps, plus one for a tail
  const int64_t panel_dwords = steps * kPanelDwords;
  const int64_t macro_rows = std::clamp<int64_t>(
      kL2WeightBytes / (padded * static_cast<int64_t>(sizeof(bf16_t))) / (2 * kTile) * (2 * kTile),
      2 * kTile, kMaxMacroRows);
  const int64_t halves_per_macro = macro_rows / kTile;
  const int64_t max_block = std::min(n, kTokenBlock);
  uint32_t* panels =
      Scratch<uint32_t, 0>(static_cast<size_t>(RoundUp(max_block, kTile) / kTile * panel_dwords));
  bf16_t* rows16 = Scratch<bf16_t, 1>(static_cast<size_t>(kTile * padded));
  bf16_t* tails = Scratch<bf16_t, 2>(static_cast<size_t>(halves_per_macro * kTile * kCols));
  bf16_t* copy = Scratch<bf16_t, 3>(static_cast<size_t>(kTile * padded));
  RowHalf halves[kMaxMacroRows / kTile];
  ConfigureTiles();
  for (int64_t b0 = 0; b0 < n; b0 += kTokenBlock) {
    const int64_t nb = std::min(kTokenBlock, n - b0);
    PackTokens(x + b0 * x_stride, x_stride, nb, w.cols, padded, rows16, panels, panel_dwords);
    float* yb = y + b0 * y_stride;
    for (int64_t m0 = r_begin; m0 < r_end; m0 += macro_rows) {
      const int64_t m1 = std::min(r_end, m0 + macro_rows);
      const int64_t count = (m1 - m0 + kTile - 1) / kTile;
      for (int64_t h = 0; h < count; ++h) {
        const int valid = static_cast<int>(std::min<int64_t>(kTile, m1 - m0 - h * kTile));
        halves[h] = PrepareHalf(w, m0 + h * kTile, valid, full_steps, padded,
                                tails + h * kTile * kCols, copy);
      }
      if (nb > 2 * kTile && nb <= 3 * kTile) {
        for (int64_t h = 0; h < count; ++h) {
          const int rows = static_cast<int>(std::min<int64_t>(kTile, m1 - m0 - h * kTile));
          BlockThreeTok(halves[h], panels, panel_dwords, steps, yb + m0 + h * kTile, y_stride, rows,
                        static_cast<int>(nb));
        }
        continue;
      }
      for (int64_t t0 = 0; t0 < nb; t0 += 2 * kTile) {
        const int tokens = static_cast<int>(std::min<int64_t>(2 * kTile, nb - t0));
        const uint32_t* b = panels + (t0 / kTile) * panel_dwords;
        for (int64_t h = 0; h < count; h += 2) {
          const int rows = static_cast<int>(std::min<int64_t>(2 * kTile, m1 - m0 - h * kTile));
          kBlock[rows > kTile][tokens > kTile](
              halves[h], halves[rows > kTile ? h + 1 : h], b, b + panel_dwords, steps,
              yb + t0 * y_stride + m0 + h * kTile, y_stride, rows, tokens);
        }
      }
    }
  }
  _tile_release();
}

}  // namespace

GemmRowsFn GemmRowsAmxBf16Fn() { return GemmRowsAmxBf16; }

}  // namespace mla::cpu::internal

#else  // not x86

namespace mla::cpu::internal {
GemmRowsFn GemmRowsAmxBf16Fn() { return nullptr; }
}  // namespace mla::cpu::internal

#endif
