// The blocking both instruction-set levels use for their dot-product GEMM tiles (small n).
// Internal to the CPU backend's GEMM files.
#ifndef MLA_ENGINE_BACKEND_CPU_GEMM_DOT_LOOP_H_
#define MLA_ENGINE_BACKEND_CPU_GEMM_DOT_LOOP_H_

#include <algorithm>
#include <cstdint>

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

}  // namespace mla::cpu::internal

#endif  // MLA_ENGINE_BACKEND_CPU_GEMM_DOT_LOOP_H_
