// The tensor-core MLA decode kernel's lane arithmetic (kernels/mla_decode_mma_rule.h),
// replayed on the CPU: every lane's fragment addresses must deliver exactly the elements
// PTX's m16n8k16 (and, for the k-split variant, ldmatrix.trans) layouts put in its
// registers, a warp's products assembled from those fragments must equal plain matrix
// products, and the fragment loads must not conflict in shared memory's 32 banks. No device
// needed.
#include "engine/backend/cuda/kernels/mla_decode_mma_rule.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "engine/backend/cuda/kernels/mla_decode.h"

namespace mla::cuda {
namespace {

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

Stored Random(int rows, int values, int stride, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(-1, 1);
  Stored s(rows, values, stride);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < values; ++c) s.at(r, c) = u(rng);
  return s;
}

constexpr int kLatent = 512, kWidth = 576, kKeys = 64, kRows = 16;

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

// One m16n8k16 as the hardware defines it, from the 32 lanes' fragments (PTX's layouts).
void WarpMma(const double (&a)[32][8], const double (&b)[32][4], double (&d)[32][4]) {
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

// What ldmatrix.x4.trans gives one lane when every lane addresses the row the kernel has
// it address for B = V at keys k0 .., columns c0 .. (PTX's semantics: register m holds
// rows 2t, 2t + 1 of matrix m's column g, whose row j lane 8m + j addressed): the B
// elements (PTX's order) of the n-tiles at c0 and c0 + 8.
struct LdmatrixB {
  double b[2][4];
};
LdmatrixB LoadV(const Stored& v, int lane, int k0, int c0) {
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
    for (int lane = 0; lane < 32; ++lane) {
      for (int i = 0; i < 4; ++i) {
        const int row = PtxCRow(lane, i), key = 8 * j + PtxCCol(lane, i);
        double want = 0;
        for (int d = 0; d < width; ++d)
          want += q.v[row * 2 * stride + d] * k.v[key * 2 * stride + d];
        ASSERT_NEAR(c[lane][i], want, 1e-9) << "row " << row << " key " << key;
      }
    }
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

// --- The ring kernel: swizzled rows without padding, B from ldmatrix (.trans for V) ------

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
LdmatrixB LoadVSwizzled(const Swizzled& v, int lane, int k0, int c0) {
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
  // The widest rows the ring takes fit the 227 KB a CTA may have on an H100 / H200; rows
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
    for (int lane = 0; lane < 32; ++lane) {
      for (int i = 0; i < 4; ++i) {
        const int row = PtxCRow(lane, i), key = 8 * warp + PtxCCol(lane, i);
        double want = 0;
        for (int d = 0; d < width; ++d)
          want += q.v[row * 2 * q_stride + d] * k.plain[key * width + d];
        ASSERT_NEAR(c[lane][i], want, 1e-9) << "warp " << warp << " row " << row << " key " << key;
      }
    }
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
  // Fits the 227 KB a CTA may have on an H100 / H200 at the widest rows it takes.
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
    // A = the q tile's 64 rows; B = keys 32·half .. + 31 of a block: K-major.
    for (int half = 0; half < 2; ++half) {
      const int row0 = half == 0 ? 0 : 32;
      const unsigned start = kBase + kSw128RowBytes * row0 + Sw128KStepBytes(ks);
      for (int r = 0; r < (half == 0 ? 64 : 32); ++r) {
        for (int c = 0; c < 16; ++c) {
          ASSERT_EQ(KMajorByte(start, kWgmmaKMajorSbo, r, c), stored(row0 + r, 16 * ks + c))
              << "k-step " << ks << " row " << row0 + r << " value " << c;
        }
      }
    }
  }
  // B = V for the output half `half`: rows = 16 keys of k-step ks, columns 256·half ..
  for (int half = 0; half < 2; ++half) {
    for (int ks = 0; ks < kKeys / 16; ++ks) {
      const unsigned start = kBase + (256u * half / 64) * kSw128BlockBytes + 16u * ks * 128;
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
