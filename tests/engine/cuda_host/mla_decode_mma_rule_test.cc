// The tensor-core MLA decode kernel's lane arithmetic (kernels/mla_decode_mma_rule.h) for
// mla_decode_mma.cu's padded rows and its k-split variant, replayed on the CPU: every
// lane's fragment addresses must deliver exactly the elements PTX's m16n8k16 (and
// ldmatrix.trans) layouts put in its registers, a warp's products assembled from those
// fragments must equal plain matrix products, and the fragment loads must not conflict in
// shared memory's 32 banks. The swizzled kernels: mla_decode_swizzled_rule_test.cc. No
// device needed.
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "tests/engine/cuda_host/mla_decode_replay.h"

namespace mla::cuda {
namespace {

using replay::ExpectScoreTile;
using replay::kKeys;
using replay::kLatent;
using replay::kRows;
using replay::kWidth;
using replay::LdmatrixB;
using replay::LoadV;
using replay::Random;
using replay::ReplayOutputPairs;
using replay::Stored;
using replay::WarpMma;

TEST(MlaDecodeMmaRuleTest, StridesKeepFragmentLoadsConflictFree) {
  for (const int values : {kWidth, kKeys, 48, 64, 640}) {
    const int stride = MmaRowStrideWords(values);
    EXPECT_GE(2 * stride, values);
    EXPECT_EQ(stride % 8, 4) << values;
    for (int r = 0; r < 4; ++r) {  // A fragments: 32 distinct banks
      std::set<int> banks;
      for (int lane = 0; lane < 32; ++lane) banks.insert(MmaAWord(lane, r, stride, 8) % 32);
      EXPECT_EQ(banks.size(), 32u) << "A register " << r << ", " << values << " values";
    }
    for (int r = 0; r < 2; ++r) {  // B = Kᵀ fragments
      std::set<int> banks;
      for (int lane = 0; lane < 32; ++lane) {
        banks.insert(MmaBWordOfRows(lane, r, stride, 16, 8) % 32);
      }
      EXPECT_EQ(banks.size(), 32u) << "B register " << r << ", " << values << " values";
    }
    for (int e = 0; e < 4; ++e) {  // B = V: lanes 2 apart in g share a word; no other overlap
      std::set<int> words, banks;
      for (int lane = 0; lane < 32; ++lane) {
        const int word = MmaBValueOfColumns(lane, e, stride, 16, 24) / 2;
        words.insert(word);
        banks.insert(word % 32);
      }
      EXPECT_EQ(banks.size(), words.size()) << "B = V element " << e << ", " << values;
    }
  }
}

TEST(MlaDecodeMmaRuleTest, FragmentAddressesDeliverPtxLayouts) {
  std::mt19937 rng(1);
  const int stride = MmaRowStrideWords(kWidth);
  const Stored q = Random(kRows, kWidth, stride, rng);
  const Stored k = Random(kKeys, kWidth, stride, rng);
  for (int lane = 0; lane < 32; ++lane) {
    for (const int k_word : {0, 8, 280}) {
      for (int e = 0; e < 8; ++e) {  // A = q: element e is register e / 2, half e % 2
        const int w = MmaAWord(lane, e / 2, stride, k_word);
        const double got = e % 2 == 0 ? q.word_lo(w) : q.word_hi(w);
        const double want = q.v[PtxARow(lane, e) * 2 * stride + 2 * k_word + PtxACol(lane, e)];
        ASSERT_EQ(got, want) << "lane " << lane << " A element " << e;
      }
      for (int e = 0; e < 4; ++e) {  // B = Kᵀ over keys 24 .. 31: B(k, n) = key 24 + n, value k
        const int w = MmaBWordOfRows(lane, e / 2, stride, 24, k_word);
        const double got = e % 2 == 0 ? k.word_lo(w) : k.word_hi(w);
        const double want =
            k.v[(24 + PtxBCol(lane, e)) * 2 * stride + 2 * k_word + PtxBRow(lane, e)];
        ASSERT_EQ(got, want) << "lane " << lane << " B element " << e;
      }
    }
    for (int e = 0; e < 4; ++e) {  // B = V at keys 32.., columns 40..: B(k, n) = V[32 + k][40 + n]
      const double got = k.value(MmaBValueOfColumns(lane, e, stride, 32, 40));
      const double want = k.v[(32 + PtxBRow(lane, e)) * 2 * stride + 40 + PtxBCol(lane, e)];
      ASSERT_EQ(got, want) << "lane " << lane << " V element " << e;
    }
  }
}

// The kernel's two products for one warp (warp 1 of 4), replayed lane by lane: scores of
// keys 16 .. 31 over every k-step, and the output columns of its latent tiles.
TEST(MlaDecodeMmaRuleTest, ReplayedWarpProductsEqualMatrixProducts) {
  std::mt19937 rng(2);
  const int stride = MmaRowStrideWords(kWidth), p_stride = MmaRowStrideWords(kKeys);
  const Stored q = Random(kRows, kWidth, stride, rng);
  const Stored k = Random(kKeys, kWidth, stride, rng);
  const Stored p = Random(kRows, kKeys, p_stride, rng);
  const int warp = 1;
  // Scores.
  for (int j = 0; j < 2; ++j) {
    double c[32][4] = {};
    for (int kw = 0; kw < kWidth / 2; kw += 8) {
      double a[32][8], b[32][4];
      for (int lane = 0; lane < 32; ++lane) {
        for (int e = 0; e < 8; ++e) {
          const int w = MmaAWord(lane, e / 2, stride, kw);
          a[lane][e] = e % 2 == 0 ? q.word_lo(w) : q.word_hi(w);
        }
        for (int e = 0; e < 4; ++e) {
          const int w = MmaBWordOfRows(lane, e / 2, stride, 16 * warp + 8 * j, kw);
          b[lane][e] = e % 2 == 0 ? k.word_lo(w) : k.word_hi(w);
        }
      }
      WarpMma(a, b, c);
    }
    for (int lane = 0; lane < 32; ++lane) {
      for (int i = 0; i < 4; ++i) {
        const int row = PtxCRow(lane, i), key = 16 * warp + 8 * j + PtxCCol(lane, i);
        double want = 0;
        for (int d = 0; d < kWidth; ++d)
          want += q.v[row * 2 * stride + d] * k.v[key * 2 * stride + d];
        ASSERT_NEAR(c[lane][i], want, 1e-9) << "row " << row << " key " << key;
      }
    }
  }
  // Output: tiles warp, warp + 4, ... of the latent, all 64 keys.
  for (int tile = warp; tile * 8 < kLatent; tile += 4) {
    double c[32][4] = {};
    for (int ks = 0; ks < kKeys / 16; ++ks) {
      double a[32][8], b[32][4];
      for (int lane = 0; lane < 32; ++lane) {
        for (int e = 0; e < 8; ++e) {
          const int w = MmaAWord(lane, e / 2, p_stride, ks * 8);
          a[lane][e] = e % 2 == 0 ? p.word_lo(w) : p.word_hi(w);
        }
        for (int e = 0; e < 4; ++e) {
          b[lane][e] =
              k.value(ks * 16 * 2 * stride + tile * 8 + MmaBValueOfColumns(lane, e, stride, 0, 0));
        }
      }
      WarpMma(a, b, c);
    }
    for (int lane = 0; lane < 32; ++lane) {
      for (int i = 0; i < 4; ++i) {
        const int row = PtxCRow(lane, i), col = tile * 8 + PtxCCol(lane, i);
        double want = 0;
        for (int key = 0; key < kKeys; ++key) {
          want += p.v[row * 2 * p_stride + key] * k.v[key * 2 * stride + col];
        }
        ASSERT_NEAR(c[lane][i], want, 1e-9) << "row " << row << " column " << col;
      }
    }
  }
}

// --- The k-split variant: V through ldmatrix.x4.trans, scores from the warps' k-ranges ---

TEST(MlaDecodeMmaRuleTest, LdmatrixRowsAreAlignedAndConflictFree) {
  for (const int values : {kWidth, 48, 64, 640}) {
    const int stride = MmaRowStrideWords(values);
    for (int m = 0; m < 4; ++m) {  // one 8-row matrix per phase: 8 rows × 16 bytes
      std::set<int> banks;
      for (int lane = 8 * m; lane < 8 * m + 8; ++lane) {
        const int word = (16 + MmaVKeyOfLane(lane)) * stride + (32 + MmaVColumnOfLane(lane)) / 2;
        EXPECT_EQ(word % 4, 0) << "ldmatrix rows are 16-byte aligned";
        for (int w = 0; w < 4; ++w) banks.insert((word + w) % 32);
      }
      EXPECT_EQ(banks.size(), 32u) << "matrix " << m << ", " << values << " values";
    }
  }
}

TEST(MlaDecodeMmaRuleTest, LdmatrixDeliversVFragments) {
  std::mt19937 rng(3);
  const int stride = MmaRowStrideWords(kWidth);
  const Stored k = Random(kKeys, kWidth, stride, rng);
  for (int lane = 0; lane < 32; ++lane) {
    // B = V at keys 32 .., columns 48 .. (two n-tiles): B(k, n) = V[32 + k][48 + 8·tile + n].
    const LdmatrixB v = LoadV(k, lane, 32, 48);
    for (int tile = 0; tile < 2; ++tile) {
      for (int e = 0; e < 4; ++e) {
        const double want =
            k.v[(32 + PtxBRow(lane, e)) * 2 * stride + 48 + 8 * tile + PtxBCol(lane, e)];
        ASSERT_EQ(v.b[tile][e], want) << "lane " << lane << " V tile " << tile << " element " << e;
      }
    }
  }
}

// The k-split variant's two products over a 64-key block, replayed lane by lane for rows
// of `width` values (the first `latent` of them V): the scores as the sum of the 4 warps'
// partial products over their shares of the row's k-steps (a warp may have none), and the
// output columns of every warp's column pairs (the last pair may have one n-tile).
void ReplayKSplit(int latent, int width, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "L " << latent << ", width " << width);
  std::mt19937 rng(seed);
  constexpr int kWarps = 4;
  const int stride = MmaRowStrideWords(width), p_stride = MmaRowStrideWords(kKeys);
  const Stored q = Random(kRows, width, stride, rng);
  const Stored k = Random(kKeys, width, stride, rng);
  const Stored p = Random(kRows, kKeys, p_stride, rng);
  const int ksteps = width / 16, per_warp = (ksteps + kWarps - 1) / kWarps;
  for (int j = 0; j < kKeys / 8; ++j) {
    double c[32][4] = {};
    for (int warp = 0; warp < kWarps; ++warp) {
      const int k_begin = std::min(warp * per_warp, ksteps);
      for (int ks = k_begin; ks < std::min(k_begin + per_warp, ksteps); ++ks) {
        double a[32][8], b[32][4];
        for (int lane = 0; lane < 32; ++lane) {
          for (int e = 0; e < 8; ++e) {
            const int w = MmaAWord(lane, e / 2, stride, 8 * ks);
            a[lane][e] = e % 2 == 0 ? q.word_lo(w) : q.word_hi(w);
          }
          for (int e = 0; e < 4; ++e) {
            const int w = MmaBWordOfRows(lane, e / 2, stride, 8 * j, 8 * ks);
            b[lane][e] = e % 2 == 0 ? k.word_lo(w) : k.word_hi(w);
          }
        }
        WarpMma(a, b, c);
      }
    }
    ExpectScoreTile(
        c, 8 * j, width, [&](int row, int d) { return q.v[row * 2 * stride + d]; },
        [&](int key, int d) { return k.v[key * 2 * stride + d]; });
  }
  ReplayOutputPairs(
      latent, kWarps, p, [&](int lane, int k0, int c0) { return LoadV(k, lane, k0, c0); },
      [&](int key, int col) { return k.v[key * 2 * stride + col]; });
}

TEST(MlaDecodeMmaRuleTest, ReplayedKSplitProductsEqualMatrixProducts) {
  ReplayKSplit(kLatent, kWidth, 4);  // DeepSeek: 36 k-steps, 9 per warp
  ReplayKSplit(40, 48, 5);           // 3 k-steps (warp 3 has none), a one-tile last pair
  ReplayKSplit(136, 144, 6);         // 9 k-steps: 3, 3, 3, 0
  ReplayKSplit(512, 640, 7);         // the widest rows: 10 per warp
}

}  // namespace
}  // namespace mla::cuda
