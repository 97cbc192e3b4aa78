// The swizzled tensor-core MLA decode kernels' lane arithmetic
// (kernels/mla_decode_mma_rule.h), replayed on the CPU: the ring kernel's and the 64-row
// kernel's unpadded rows with 16-byte chunks swizzled by the row (every chunk once, in its
// own row; ldmatrix phases conflict-free), their products assembled lane by lane through
// PTX's ldmatrix semantics against plain matrix products, the 64-row kernel's p stores,
// and the wgmma build's descriptors against PTX's canonical 128-byte-swizzle layouts. No
// device needed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "engine/backend/cuda/kernels/mla_decode.h"
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"
#include "tests/engine/cuda_host/mla_decode_replay.h"

namespace mla::cuda {
namespace {

using replay::ExpectScoreTile;
using replay::kKeys;
using replay::kLatent;
using replay::kRows;
using replay::kWidth;
using replay::LoadVSwizzled;
using replay::Random;
using replay::ReplayOutputPairs;
using replay::Stored;
using replay::Swizzled;
using replay::WarpMma;

TEST(MlaDecodeMmaRuleTest, RingSwizzleKeepsEveryChunkInItsOwnRow) {
  for (const int values : {kWidth, 48, 64, 144, 16, 560}) {
    const int row_chunks = RingRowChunks(values);
    EXPECT_EQ(row_chunks % 8, 0);
    EXPECT_GE(row_chunks * 8, values);
    // An odd k-step count reads two chunks past the row's values: still inside the row.
    const int ksteps = values / 16;
    EXPECT_LE(4 * ((ksteps + 1) / 2), row_chunks) << values;
    for (int key = 0; key < kKeys; ++key) {
      std::set<int> words;
      for (int c = 0; c < row_chunks; ++c) {
        const int w = RingChunkWord(key, c, row_chunks);
        EXPECT_EQ(w % 4, 0);
        EXPECT_GE(w, 4 * key * row_chunks);
        EXPECT_LT(w, 4 * (key + 1) * row_chunks);
        words.insert(w);
      }
      EXPECT_EQ(words.size(), static_cast<size_t>(row_chunks)) << "key " << key;
    }
  }
  // The widest rows the ring takes fit the 227 KiB a CTA may have on an H100 / H200; rows
  // one k-step wider would not.
  EXPECT_LE(RingSharedBytes(kMlaRingMaxWidth), 227 * 1024);
  EXPECT_GT(RingSharedBytes(kMlaRingMaxWidth + 16), 227 * 1024);
}

TEST(MlaDecodeMmaRuleTest, RingLdmatrixPhasesAreConflictFree) {
  for (const int values : {kWidth, 48, 144}) {
    const int row_chunks = RingRowChunks(values);
    for (int m = 0; m < 4; ++m) {  // one 8-row matrix per phase
      std::set<int> k_banks, v_banks;
      for (int lane = 8 * m; lane < 8 * m + 8; ++lane) {
        // Scores: warp 5's keys at k-steps 4, 5; V: k-step 2, column pair 3.
        const int kw =
            RingChunkWord(40 + RingKKeyOfLane(lane), 8 + RingKChunkOfLane(lane), row_chunks);
        const int vw =
            RingChunkWord(32 + MmaVKeyOfLane(lane), (48 + MmaVColumnOfLane(lane)) / 8, row_chunks);
        for (int w = 0; w < 4; ++w) {
          k_banks.insert((kw + w) % 32);
          v_banks.insert((vw + w) % 32);
        }
      }
      EXPECT_EQ(k_banks.size(), 32u) << "scores, matrix " << m << ", " << values << " values";
      EXPECT_EQ(v_banks.size(), 32u) << "V, matrix " << m << ", " << values << " values";
    }
  }
}

// The ring kernel's products over a 64-key block for rows of `width` values (the first
// `latent` of them V), replayed lane by lane through ldmatrix's semantics on the swizzled
// block: each warp's n-tile of scores over every k-step (q's fragments as LoadQueryFragments
// reads them from contiguous rows), and each warp's column pairs of the output.
void ReplayRing(int latent, int width, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "L " << latent << ", width " << width);
  std::mt19937 rng(seed);
  constexpr int kWarps = 8;
  const int q_stride = width / 2, p_stride = MmaRowStrideWords(kKeys);
  const Stored q = Random(kRows, width, q_stride, rng);
  const Stored p = Random(kRows, kKeys, p_stride, rng);
  const Swizzled k(kKeys, width, rng);
  const int ksteps = width / 16;
  for (int warp = 0; warp < kWarps; ++warp) {
    double c[32][4] = {};
    for (int kp = 0; 2 * kp < ksteps; ++kp) {
      // ldmatrix.x4: register m of lane (g, t) is row g, values 2t, 2t + 1 of matrix m,
      // whose row g lane 8m + g addressed.
      double reg[32][4][2];
      for (int lane = 0; lane < 32; ++lane) {
        for (int m = 0; m < 4; ++m) {
          const int source = 8 * m + PtxLdmatrixRow(lane);
          const int word = RingChunkWord(8 * warp + RingKKeyOfLane(source),
                                         4 * kp + RingKChunkOfLane(source), k.row_chunks);
          for (int half = 0; half < 2; ++half) {
            reg[lane][m][half] = k.row_value(word, PtxLdmatrixCol(lane, half));
          }
        }
      }
      for (int step = 0; step < 2 && 2 * kp + step < ksteps; ++step) {
        const int ks = 2 * kp + step;
        double a[32][8], b[32][4];
        for (int lane = 0; lane < 32; ++lane) {
          for (int e = 0; e < 8; ++e) {
            const int w = MmaAWord(lane, e / 2, q_stride, 8 * ks);
            a[lane][e] = e % 2 == 0 ? q.word_lo(w) : q.word_hi(w);
          }
          for (int e = 0; e < 4; ++e) b[lane][e] = reg[lane][2 * step + e / 2][e % 2];
        }
        WarpMma(a, b, c);
      }
    }
    SCOPED_TRACE(::testing::Message() << "warp " << warp);
    ExpectScoreTile(
        c, 8 * warp, width, [&](int row, int d) { return q.v[row * 2 * q_stride + d]; },
        [&](int key, int d) { return k.plain[key * width + d]; });
  }
  ReplayOutputPairs(
      latent, kWarps, p, [&](int lane, int k0, int c0) { return LoadVSwizzled(k, lane, k0, c0); },
      [&](int key, int col) { return k.plain[key * width + col]; });
}

TEST(MlaDecodeMmaRuleTest, ReplayedRingProductsEqualMatrixProducts) {
  ReplayRing(kLatent, kWidth, 8);  // DeepSeek: 36 k-steps, 4 column pairs per warp
  ReplayRing(40, 48, 9);     // 3 k-steps (the last pair's second half unused), a one-tile pair
  ReplayRing(136, 144, 10);  // 9 k-steps; pairs 0 .. 8, warp 0 takes two
  ReplayRing(16, 16, 11);    // one k-step, one pair
}

// --- The 64-row kernel: q's A fragments through ldmatrix, p stored from the scores ------

// The 64-row kernel's scores for the warp of row group `group` and half `half` over a
// 64-key block of rows of `width` values, replayed lane by lane: A from the swizzled q tile
// and B from the swizzled keys, both through ldmatrix.x4 (PTX's semantics), against Q·Kᵀ.
void ReplayRows64Scores(int width, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << "width " << width);
  std::mt19937 rng(seed);
  const Swizzled q(kRows64Rows, width, rng);
  const Swizzled k(kKeys, width, rng);
  const int ksteps = width / 16;
  // ldmatrix.x4 (no .trans) with lane l addressing `word(l)`: register m, half h of a lane.
  auto ldmatrix = [](const Swizzled& src, auto word, double(&reg)[32][4][2]) {
    for (int lane = 0; lane < 32; ++lane) {
      for (int m = 0; m < 4; ++m) {
        const int w = word(8 * m + PtxLdmatrixRow(lane));
        for (int half = 0; half < 2; ++half) {
          reg[lane][m][half] = src.row_value(w, PtxLdmatrixCol(lane, half));
        }
      }
    }
  };
  for (int group = 0; group < 4; ++group) {
    for (int half = 0; half < 2; ++half) {
      for (int j = 0; j < 4; ++j) {
        double c[32][4] = {};
        for (int kp = 0; 2 * kp < ksteps; ++kp) {
          double qa[2][32][4][2], kb[32][4][2];
          for (int step = 0; step < 2; ++step) {
            ldmatrix(
                q,
                [&](int l) {
                  return RingChunkWord(16 * group + Rows64ARowOfLane(l),
                                       4 * kp + 2 * step + Rows64AChunkOfLane(l), q.row_chunks);
                },
                qa[step]);
          }
          ldmatrix(
              k,
              [&](int l) {
                return RingChunkWord(32 * half + 8 * j + RingKKeyOfLane(l),
                                     4 * kp + RingKChunkOfLane(l), k.row_chunks);
              },
              kb);
          for (int step = 0; step < 2 && 2 * kp + step < ksteps; ++step) {
            double a[32][8], b[32][4];
            for (int lane = 0; lane < 32; ++lane) {
              for (int e = 0; e < 8; ++e) a[lane][e] = qa[step][lane][e / 2][e % 2];
              for (int e = 0; e < 4; ++e) b[lane][e] = kb[lane][2 * step + e / 2][e % 2];
            }
            WarpMma(a, b, c);
          }
        }
        for (int lane = 0; lane < 32; ++lane) {
          for (int i = 0; i < 4; ++i) {
            const int row = 16 * group + PtxCRow(lane, i);
            const int key = 32 * half + 8 * j + PtxCCol(lane, i);
            double want = 0;
            for (int d = 0; d < width; ++d) {
              want += q.plain[row * width + d] * k.plain[key * width + d];
            }
            ASSERT_NEAR(c[lane][i], want, 1e-9)
                << "group " << group << " half " << half << " row " << row << " key " << key;
          }
        }
      }
    }
  }
}

TEST(MlaDecodeMmaRuleTest, ReplayedRows64ScoresEqualMatrixProducts) {
  ReplayRows64Scores(kWidth, 12);  // DeepSeek: 36 k-steps
  ReplayRows64Scores(48, 13);      // 3: the last pair's second A tile in the padding
  ReplayRows64Scores(144, 14);
  ReplayRows64Scores(16, 15);
}

TEST(MlaDecodeMmaRuleTest, Rows64PStoresAreThePRowsAndConflictFree) {
  // Accumulators 2h, 2h + 1 of n-tile j are row 16·group + g + 8h, keys 32·half + 8j + 2t
  // and + 1: the word of that key pair in p's rows, which LoadPFragment then reads.
  std::set<int> words;
  for (int group = 0; group < 4; ++group) {
    for (int half = 0; half < 2; ++half) {
      for (int j = 0; j < 4; ++j) {
        for (int h = 0; h < 2; ++h) {
          std::set<int> banks;
          for (int lane = 0; lane < 32; ++lane) {
            const int row = 16 * group + PtxCRow(lane, 2 * h);
            const int key = 32 * half + 8 * j + PtxCCol(lane, 2 * h);
            ASSERT_EQ(key % 2, 0);
            const int w = Rows64PWord(lane, group, half, j, h);
            EXPECT_EQ(w, row * kRingPStride + key / 2) << "lane " << lane;
            words.insert(w);
            banks.insert(w % 32);
          }
          EXPECT_EQ(banks.size(), 32u) << "group " << group << " half " << half << " j " << j;
        }
      }
    }
  }
  EXPECT_EQ(words.size(), static_cast<size_t>(kRows64Rows * kKeys / 2));  // every pair once
  // Fits the 227 KiB a CTA may have on an H100 / H200 at the widest rows it takes.
  EXPECT_LE(Rows64SharedBytes(kMlaRingMaxWidth), 227 * 1024);
}

// --- The wgmma variant: PTX's canonical 128-byte-swizzle layouts against the storage ------

// The byte wgmma reads for an operand element, from PTX's canonical layouts for 16-bit
// types (T = 8 values per 16 bytes): the unswizzled address, then Swizzle<3, 4, 3> on the
// byte address (the 16-byte chunk bits 4-6 XOR the 128-byte row bits 7-9).
unsigned Swizzle128(unsigned address) { return address ^ (((address >> 7) & 7u) << 4); }
// K-major, 128-byte swizzle: ((8, m), (T, 2k)) : ((8T, SBO), (1, T)) for row r, value c.
unsigned KMajorByte(unsigned start, unsigned sbo, int r, int c) {
  return Swizzle128(start + 128u * (r % 8) + sbo * (r / 8) + 2u * c);
}
// MN-major, 128-byte swizzle: ((T, 8, m), (8, k)) : ((1, T, LBO), (8T, SBO)) for column n
// (the contiguous dimension) and row k.
unsigned NMajorByte(unsigned start, unsigned lbo, unsigned sbo, int n, int k) {
  return Swizzle128(start + 2u * (n % 64) + lbo * (n / 64) + 128u * (k % 8) + sbo * (k / 8));
}

TEST(MlaDecodeMmaRuleTest, WgmmaDescriptorsReadTheStoredTiles) {
  constexpr unsigned kBase = 3 * 1024 * 8;  // a 1024-byte aligned tile
  const int ksteps = kWidth / 16;
  // Where Sw128ChunkWord stores value c of row r.
  auto stored = [](int r, int c) { return kBase + 4u * Sw128ChunkWord(r, c / 8) + 2u * (c % 8); };
  for (int ks = 0; ks < ksteps; ++ks) {
    // A = the q tile's 64 rows (WgmmaScores starts it at Sw128KStepBytes), K-major.
    for (int r = 0; r < 64; ++r) {
      for (int c = 0; c < 16; ++c) {
        ASSERT_EQ(KMajorByte(kBase + Sw128KStepBytes(ks), kWgmmaKMajorSbo, r, c),
                  stored(r, 16 * ks + c))
            << "q: k-step " << ks << " row " << r << " value " << c;
      }
    }
    // B = keys 32·half .. + 31 of a block, K-major.
    for (int half = 0; half < 2; ++half) {
      const unsigned start = kBase + WgmmaKeysStartBytes(half, ks);
      for (int r = 0; r < 32; ++r) {
        for (int c = 0; c < 16; ++c) {
          ASSERT_EQ(KMajorByte(start, kWgmmaKMajorSbo, r, c), stored(32 * half + r, 16 * ks + c))
              << "keys: k-step " << ks << " key " << 32 * half + r << " value " << c;
        }
      }
    }
  }
  // B = V for the output half `half`: rows = 16 keys of k-step ks, columns 256·half ..
  for (int half = 0; half < 2; ++half) {
    for (int ks = 0; ks < kKeys / 16; ++ks) {
      const unsigned start = kBase + WgmmaVStartBytes(half, ks);
      for (int k = 0; k < 16; ++k) {
        for (int n = 0; n < 256; ++n) {
          ASSERT_EQ(NMajorByte(start, kWgmmaNMajorLbo, kWgmmaNMajorSbo, n, k),
                    stored(16 * ks + k, 256 * half + n))
              << "half " << half << " key " << 16 * ks + k << " column " << n;
        }
      }
    }
  }
  // The descriptor's fields (PTX: start, LBO, SBO >> 4 in bits 0, 16, 32; 128-byte swizzle
  // in bits 62-63).
  const unsigned long long d = WgmmaDescriptor(0x12340, kWgmmaNMajorLbo, kWgmmaNMajorSbo);
  EXPECT_EQ(d & 0x3FFF, 0x1234u);
  EXPECT_EQ((d >> 16) & 0x3FFF, kWgmmaNMajorLbo >> 4);
  EXPECT_EQ((d >> 32) & 0x3FFF, kWgmmaNMajorSbo >> 4);
  EXPECT_EQ((d >> 49) & 7, 0u);
  EXPECT_EQ(d >> 62, 1u);
  EXPECT_EQ(Rows64WgmmaSharedBytes(kWidth) % 16, 0);
  EXPECT_LE(Rows64WgmmaSharedBytes(kWidth), 227 * 1024);
}

TEST(MlaDecodeMmaRuleTest, Sw128TilesStoreEveryChunkOnceConflictFree) {
  std::set<int> words;
  for (int r = 0; r < 64; ++r) {
    for (int c = 0; c < kWidth / 8; ++c) {
      const int w = Sw128ChunkWord(r, c);
      EXPECT_EQ(w % 4, 0);
      EXPECT_LT(w, Sw128TileWords(kWidth));
      words.insert(w);
    }
  }
  EXPECT_EQ(words.size(), static_cast<size_t>(64 * kWidth / 8));
  for (int c = 0; c < kWidth / 8; ++c) {  // ldmatrix: rows 8i .. 8i + 7 of one chunk
    std::set<int> banks;
    for (int r = 16; r < 24; ++r) {
      for (int w = 0; w < 4; ++w) banks.insert((Sw128ChunkWord(r, c) + w) % 32);
    }
    EXPECT_EQ(banks.size(), 32u) << "chunk " << c;
  }
}

}  // namespace
}  // namespace mla::cuda
