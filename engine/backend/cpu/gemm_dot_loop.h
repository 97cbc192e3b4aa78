// The blocking the instruction-set levels share: dot-product GEMM tiles (small n) and the
// fp32 packed-panel loop (large n). Internal to the CPU backend's GEMM files.
#ifndef MLA_ENGINE_BACKEND_CPU_GEMM_DOT_LOOP_H_
#define MLA_ENGINE_BACKEND_CPU_GEMM_DOT_LOOP_H_

#include <algorithm>
#include <cstdint>

#include "engine/common/bf16.h"

namespace mla::cpu::internal {

struct DotBlocking {
  int rows;           // rows per full tile; the rest of a block goes one row at a time
  int tokens;         // tokens per tile; the last group may hold fewer
  int64_t row_block;  // rows whose column pass stays in L2 while every token group runs
  int64_t col_pass;   // columns per pass (a multiple of the tile's column step)
};

// Calls tile(r, tile_rows, t0, nt, c0, c1, next) for every tile of rows [r_begin, r_end)
// × tokens [0, n) × columns [0, cols): row blocks outermost, then column passes, then
// token groups, then the tiles of the block. `next` is the row offset of the same rows in
// the next block while the first token group passes over a block (0 otherwise): the tile
// prefetches it, so that later groups run from L2 while DRAM streams the next block.
// c0 > 0 means the tile adds to y rather than overwriting it.
template <typename Tile>
void ForEachDotTile(const DotBlocking& b, int64_t n, int64_t r_begin, int64_t r_end, int64_t cols,
                    Tile&& tile) {
  for (int64_t rb = r_begin; rb < r_end; rb += b.row_block) {
    const int64_t re = std::min(rb + b.row_block, r_end);
    for (int64_t c0 = 0; c0 < cols; c0 += b.col_pass) {
      const int64_t c1 = std::min(c0 + b.col_pass, cols);
      for (int64_t t0 = 0; t0 < n; t0 += b.tokens) {
        const int64_t nt = std::min<int64_t>(b.tokens, n - t0);
        const int64_t next = t0 == 0 && re + b.row_block <= r_end ? b.row_block : 0;
        int64_t r = rb;
        for (; r + b.rows <= re; r += b.rows) tile(r, b.rows, t0, nt, c0, c1, next);
        for (; r < re; ++r) tile(r, 1, t0, nt, c0, c1, next);
      }
    }
  }
}

// y[t, r] (+)= Σ_{c in [c_begin, cols)} x[t, c] · w[r, c] for rows [r_begin, r_end) and
// tokens [0, n), in plain fp32: the columns a dot-tile kernel's vector step does not
// cover. Overwrites y when c_begin == 0 (then every column is here; none writes zeros).
inline void AddColumnTail(const float* x, int64_t x_stride, int64_t n, const bf16_t* w,
                          int64_t w_stride, int64_t cols, int64_t r_begin, int64_t r_end,
                          int64_t c_begin, float* y, int64_t y_stride) {
  for (int64_t r = r_begin; r < r_end; ++r) {
    const bf16_t* wr = w + r * w_stride;
    for (int64_t t = 0; t < n; ++t) {
      const float* xt = x + t * x_stride;
      float s = 0.0f;
      for (int64_t c = c_begin; c < cols; ++c) s += xt[c] * Bf16ToFloat(wr[c]);
      float& out = y[t * y_stride + r];
      out = c_begin > 0 ? out + s : s;
    }
  }
}

// Prefetches into L2 the cache line at `p` in each of kRows rows w_stride values apart:
// the dot tiles' next row block, fetched while the first token group runs.
template <int kRows>
inline void PrefetchRows(const bf16_t* p, int64_t w_stride) {
#pragma GCC unroll 16
  for (int r = 0; r < kRows; ++r) {
    __builtin_prefetch(p + r * w_stride, 0, 2);
  }
}

struct PanelBlocking {
  int64_t token_block;  // tokens whose x slice stays in L2 while the panels pass over it
  int panel_rows;       // weight rows per packed panel
  int64_t col_pass;     // panel depth in columns
  int micro_tokens;     // tokens per register tile
};

// The fp32 packed GEMMs' loop (gemm_avx2.cc, gemm_avx512.cc) over rows [r_begin, r_end) ×
// tokens [0, n): token blocks outermost, then panels of rows, then column passes, each
// packed once by pack(r0, valid_rows, c0, kc), then register tiles of up to micro_tokens
// tokens, micro(t0, nt, r0, valid_rows, c0, kc); c0 > 0 means the tile adds to y. With
// no columns, y's rows are zeroed instead.
template <typename Pack, typename Micro>
void ForEachPanelTile(const PanelBlocking& b, int64_t n, int64_t r_begin, int64_t r_end,
                      int64_t cols, float* y, int64_t y_stride, Pack&& pack, Micro&& micro) {
  for (int64_t b0 = 0; b0 < n; b0 += b.token_block) {
    const int64_t b1 = std::min(n, b0 + b.token_block);
    for (int64_t r0 = r_begin; r0 < r_end; r0 += b.panel_rows) {
      const int valid = static_cast<int>(std::min<int64_t>(b.panel_rows, r_end - r0));
      if (cols == 0) {
        for (int64_t i = b0; i < b1; ++i) std::fill_n(y + i * y_stride + r0, valid, 0.0f);
      }
      for (int64_t c0 = 0; c0 < cols; c0 += b.col_pass) {
        const int64_t kc = std::min(b.col_pass, cols - c0);
        pack(r0, valid, c0, kc);
        for (int64_t t0 = b0; t0 < b1; t0 += b.micro_tokens) {
          micro(t0, static_cast<int>(std::min<int64_t>(b.micro_tokens, b1 - t0)), r0, valid, c0,
                kc);
        }
      }
    }
  }
}

}  // namespace mla::cpu::internal

#endif  // MLA_ENGINE_BACKEND_CPU_GEMM_DOT_LOOP_H_
