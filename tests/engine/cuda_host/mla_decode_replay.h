// What the CPU replays of the tensor-core MLA decode kernels' lane arithmetic share
// (mla_decode_mma_rule_test.cc: the padded rows of mla_decode_mma.cu and its k-split
// variant; mla_decode_swizzled_rule_test.cc: the swizzled rows of the ring and 64-row
// kernels and the wgmma build's tiles): matrices stored as the kernels store them, one
// m16n8k16 as PTX defines it from the 32 lanes' fragments, ldmatrix.trans as PTX defines
// it, and the replay of a block's output columns.
#ifndef MLA_TESTS_ENGINE_CUDA_HOST_MLA_DECODE_REPLAY_H_
#define MLA_TESTS_ENGINE_CUDA_HOST_MLA_DECODE_REPLAY_H_

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"

namespace mla::cuda::replay {

// A matrix of `rows` × `values` stored as the kernel stores it: `stride` words per row,
// word w holding values 2w (low half) and 2w + 1 (high half). Values are kept as doubles
// indexed by (row, value); a word is (row, 2w) and (row, 2w + 1).
struct Stored {
  int rows, values, stride;
  std::vector<double> v;  // [rows][2 * stride], padding NaN
  Stored(int r, int n, int s) : rows(r), values(n), stride(s), v(r * 2 * s, NAN) {}
  double& at(int r, int c) { return v[r * 2 * stride + c]; }
  double word_lo(int w) const { return v[2 * w]; }  // w: a word index into the whole array
  double word_hi(int w) const { return v[2 * w + 1]; }
  double value(int i) const { return v[i]; }  // i: a bf16 index into the whole array
};

inline Stored Random(int rows, int values, int stride, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  Stored s(rows, values, stride);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < values; ++c) s.at(r, c) = u(rng);
  return s;
}

constexpr int kLatent = 512, kWidth = 576, kKeys = 64, kRows = 16;

// One m16n8k16 as the hardware defines it, from the 32 lanes' fragments (PTX's layouts).
inline void WarpMma(const double (&a)[32][8], const double (&b)[32][4], double (&d)[32][4]) {
  double am[16][16], bm[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < 8; ++e) am[PtxARow(lane, e)][PtxACol(lane, e)] = a[lane][e];
    for (int e = 0; e < 4; ++e) bm[PtxBRow(lane, e)][PtxBCol(lane, e)] = b[lane][e];
  }
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      double sum = 0;
      for (int kk = 0; kk < 16; ++kk) sum += am[PtxCRow(lane, i)][kk] * bm[kk][PtxCCol(lane, i)];
      d[lane][i] += sum;
    }
  }
}

// What ldmatrix.x4.trans gives one lane when every lane addresses the row the kernel has
// it address for B = V at keys k0 .., columns c0 .. (PTX's semantics: register m holds
// rows 2t, 2t + 1 of matrix m's column g, whose row j lane 8m + j addressed): the B
// elements (PTX's order) of the n-tiles at c0 and c0 + 8.
struct LdmatrixB {
  double b[2][4];
};
inline LdmatrixB LoadV(const Stored& v, int lane, int k0, int c0) {
  LdmatrixB out;
  for (int m = 0; m < 4; ++m) {
    for (int half = 0; half < 2; ++half) {
      const int source = 8 * m + PtxLdmatrixTransRow(lane, half);
      const int key = k0 + MmaVKeyOfLane(source);
      const int col = c0 + MmaVColumnOfLane(source) + PtxLdmatrixTransCol(lane);
      // Register m: tile m / 2, B register m % 2 (elements 2·(m % 2) + half).
      out.b[m / 2][2 * (m % 2) + half] = v.v[key * 2 * v.stride + col];
    }
  }
  return out;
}

// The output columns of every warp's column pairs (16 columns each; the last pair may
// have one n-tile) over a 64-key block, replayed lane by lane: A from p's fragments, B for
// a pair from load_v(lane, first key, first column) (LdmatrixB), checked against
// Σ_key p[row][key] · v(key, column).
template <typename LoadVFn, typename VFn>
void ReplayOutputPairs(int latent, int warps, const Stored& p, LoadVFn load_v, VFn v) {
  for (int warp = 0; warp < warps; ++warp) {
    for (int pair = warp; pair * 16 < latent; pair += warps) {
      double c[2][32][4] = {};
      for (int ks = 0; ks < kKeys / 16; ++ks) {
        double a[32][8], b[2][32][4];
        for (int lane = 0; lane < 32; ++lane) {
          for (int e = 0; e < 8; ++e) {
            const int w = MmaAWord(lane, e / 2, p.stride, ks * 8);
            a[lane][e] = e % 2 == 0 ? p.word_lo(w) : p.word_hi(w);
          }
          const LdmatrixB vb = load_v(lane, 16 * ks, 16 * pair);
          for (int tile = 0; tile < 2; ++tile)
            for (int e = 0; e < 4; ++e) b[tile][lane][e] = vb.b[tile][e];
        }
        WarpMma(a, b[0], c[0]);
        if (16 * pair + 8 < latent) WarpMma(a, b[1], c[1]);
      }
      for (int tile = 0; tile < 2 && 16 * pair + 8 * tile < latent; ++tile) {
        for (int lane = 0; lane < 32; ++lane) {
          for (int i = 0; i < 4; ++i) {
            const int row = PtxCRow(lane, i), col = 16 * pair + 8 * tile + PtxCCol(lane, i);
            double want = 0;
            for (int key = 0; key < kKeys; ++key)
              want += p.v[row * 2 * p.stride + key] * v(key, col);
            ASSERT_NEAR(c[tile][lane][i], want, 1e-9)
                << "warp " << warp << " row " << row << " column " << col;
          }
        }
      }
    }
  }
}

// A block of `keys` rows of `values` values as the ring kernel stores it: RingRowChunks
// chunks of 8 values per row, logical chunk c of key k at RingChunkWord (the rest NaN).
struct Swizzled {
  int keys, values, row_chunks;
  std::vector<double> v;      // [keys · row_chunks · 8], indexed by bf16 position
  std::vector<double> plain;  // [keys][values]: the same values, unswizzled
  Swizzled(int k, int n, std::mt19937& rng)
      : keys(k),
        values(n),
        row_chunks(RingRowChunks(n)),
        v(k * RingRowChunks(n) * 8, NAN),
        plain(k * n) {
    std::uniform_real_distribution<double> u(-1, 1);
    for (int key = 0; key < keys; ++key) {
      for (int c = 0; c < values; ++c) {
        const double x = u(rng);
        plain[key * values + c] = x;
        v[2 * RingChunkWord(key, c / 8, row_chunks) + c % 8] = x;
      }
    }
  }
  // Value `i` (0..7) of the 16-byte row at word `word`, as ldmatrix reads it.
  double row_value(int word, int i) const { return v[2 * word + i]; }
};

// LoadV on the ring kernel's swizzled block: each lane's ldmatrix row at RingChunkWord.
inline LdmatrixB LoadVSwizzled(const Swizzled& v, int lane, int k0, int c0) {
  LdmatrixB out;
  for (int m = 0; m < 4; ++m) {
    for (int half = 0; half < 2; ++half) {
      const int source = 8 * m + PtxLdmatrixTransRow(lane, half);
      const int word = RingChunkWord(k0 + MmaVKeyOfLane(source),
                                     (c0 + MmaVColumnOfLane(source)) / 8, v.row_chunks);
      out.b[m / 2][2 * (m % 2) + half] = v.row_value(word, PtxLdmatrixTransCol(lane));
    }
  }
  return out;
}

// Asserts a warp's n-tile of scores (its lanes' accumulators c, rows 0 .. 15, keys n0 ..
// n0 + 7) against Σ_d q(row, d) · k(key, d) over `width` values.
template <typename QFn, typename KFn>
void ExpectScoreTile(const double (&c)[32][4], int n0, int width, QFn q, KFn k) {
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const int row = PtxCRow(lane, i), key = n0 + PtxCCol(lane, i);
      double want = 0;
      for (int d = 0; d < width; ++d) want += q(row, d) * k(key, d);
      ASSERT_NEAR(c[lane][i], want, 1e-9) << "row " << row << " key " << key;
    }
  }
}

}  // namespace mla::cuda::replay

#endif  // MLA_TESTS_ENGINE_CUDA_HOST_MLA_DECODE_REPLAY_H_
