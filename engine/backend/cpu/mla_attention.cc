// Driver of the CPU MLA attention: validation, planning (mla_split_plan.h), the loop over
// key blocks of each work item, and the split-KV combine. The arithmetic lives in the
// per-instruction-set kernels (mla_attention_kernels.h).
//
// Per work item and key block of kMlaKeyBlock keys: gather the keys' cache rows through
// the block table, convert them to fp32 once, then run every query vector (row, head) of
// the item over them, kMlaTileVectors at a time. With many heads each converted key is
// reused h_q times from L2, which makes the loop compute-bound. Items with at most
// kMlaDirectVectors query vectors (one to three heads) skip the conversion and work on
// the bf16 rows directly: they stream the cache once and are bound by DRAM. An FP8 cache
// always takes the converted path: its dequantization (code · group scale) happens once
// per key in the conversion, and the 43% fewer bytes per key make up for the copy. At the
// opt-in bf16 level the conversion writes bf16 layouts for vdpbf16ps instead
// (mla_attention_kernels_avx512_bf16.cc); the direct path is the same.
#include "engine/backend/cpu/mla_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/backend/cpu/cpu_features.h"
#include "engine/backend/cpu/mla_attention_kernels.h"
#include "engine/kv_cache/cache_row.h"

namespace mla::cpu {
namespace {

using internal::kMlaKeyBlock;
using internal::kMlaTileVectors;
using internal::MlaKernelOps;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
static_assert(internal::kMlaDirectVectors <= kMlaTileVectors, "nvalid holds either");

const MlaKernelOps& SelectOps(int width) {
  if (ActiveIsa() >= CpuIsa::kAvx512Bf16) {
    if (const MlaKernelOps* ops = internal::MlaKernelOpsAvx512Bf16(width)) return *ops;
  }
  if (ActiveIsa() >= CpuIsa::kAvx2) {
    if (const MlaKernelOps* ops = internal::MlaKernelOpsAvx2()) return *ops;
  }
  return internal::MlaKernelOpsScalar();
}

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("MlaAttention: ", message));
}

absl::Status ValidateSequence(const MlaAttentionParams& p, int64_t j) {
  const int64_t n_q = p.cu_seqlens_q[j + 1] - p.cu_seqlens_q[j];
  const int64_t seq_len = p.seq_lens[j];
  const int64_t pos0 = p.q_pos0[j];
  if (n_q < 0) return Invalid(absl::StrCat("cu_seqlens_q decreases at sequence ", j));
  if (seq_len < 0 || pos0 < 0) {
    return Invalid(
        absl::StrCat("sequence ", j, ": negative seq_len ", seq_len, " or q_pos0 ", pos0));
  }
  if (pos0 + n_q > seq_len) {
    return Invalid(absl::StrCat("sequence ", j, ": query rows reach position ", pos0 + n_q,
                                " beyond seq_len ", seq_len));
  }
  const int64_t blocks = (seq_len + p.block_size - 1) / p.block_size;
  if (blocks > p.max_blocks_per_seq) {
    return Invalid(absl::StrCat("sequence ", j, ": seq_len ", seq_len, " needs ", blocks,
                                " blocks, block table holds ", p.max_blocks_per_seq));
  }
  const int32_t* table = p.block_table + j * p.max_blocks_per_seq;
  for (int64_t b = 0; b < blocks; ++b) {
    if (table[b] < 0 || table[b] >= p.num_blocks) {
      return Invalid(absl::StrCat("sequence ", j, ": block id ", table[b], " at index ", b,
                                  " outside [0, ", p.num_blocks, ")"));
    }
  }
  return absl::OkStatus();
}

// The running output, max and sum of one item become its result: out = o / l and
// lse = m + log l (no visible key: out = 0, lse = -inf).
void FinalizeItem(int64_t nqv, int64_t latent, const float* m, const float* l, float* out,
                  float* lse) {
  for (int64_t v = 0; v < nqv; ++v) {
    float* o = out + v * latent;
    if (l[v] > 0.0f) {
      const float inv = 1.0f / l[v];
      for (int64_t d = 0; d < latent; ++d) o[d] *= inv;
      lse[v] = m[v] + std::log(l[v]);
    } else {
      std::fill(o, o + latent, 0.0f);
      lse[v] = kNegInf;
    }
  }
}

// nvalid[t] = keys of block [kb, kb + nk) that query vector v + t of the item sees.
void SetVisibleKeys(const MlaWorkItem& item, int64_t heads, int64_t pos0, int64_t kb, int nk,
                    int64_t v, int count, int* nvalid) {
  for (int t = 0; t < count; ++t) {
    const int64_t row = item.row_begin + (v + t) / heads;
    nvalid[t] = static_cast<int>(std::clamp<int64_t>(pos0 + row + 1 - kb, 0, nk));
  }
}

// Cache rows of keys [first, first + n) of the sequence with block table `table`
// (walks block by block: no division per key).
void GatherRows(const MlaAttentionParams& p, const int32_t* table, int64_t row_bytes, int64_t first,
                int n, const uint8_t** rows) {
  const uint8_t* cache = static_cast<const uint8_t*>(p.kv_cache);
  int64_t block = first / p.block_size;
  int64_t offset = first % p.block_size;
  for (int k = 0; k < n; ++block, offset = 0) {
    const uint8_t* base = cache + int64_t{table[block]} * p.block_size * row_bytes;
    for (; offset < p.block_size && k < n; ++offset, ++k) rows[k] = base + offset * row_bytes;
  }
}

struct ItemRunner {
  const MlaAttentionParams& p;
  const MlaKernelOps& ops;
  int64_t width;         // L + R
  int64_t row_bytes;     // one token's cache row, CacheRowBytes(p.kv_dtype, L, R)
  int64_t block_floats;  // converted key block, ops.block_floats(width, L)

  // Runs one item into out [rows, H, L] and lse [rows, H]. scratch: see MlaAttention.
  void Run(const MlaWorkItem& item, float* out, float* lse, float* scratch) const {
    const int64_t heads = p.num_heads;
    const int64_t latent = p.kv_lora_rank;
    const int64_t pos0 = p.q_pos0[item.seq];
    const int64_t nqv = static_cast<int64_t>(item.row_end - item.row_begin) * heads;
    const int32_t* table = p.block_table + item.seq * p.max_blocks_per_seq;
    float* block = scratch;
    float* scores = block + block_floats;
    float* q_scratch = scores + kMlaTileVectors * kMlaKeyBlock;
    float* m = q_scratch + internal::kMlaDirectVectors * width;
    float* l = m + nqv;
    std::fill(out, out + nqv * latent, 0.0f);
    std::fill(m, m + nqv, kNegInf);
    std::fill(l, l + nqv, 0.0f);

    // This block's rows, then the next block's (the direct path prefetches those).
    const uint8_t* rows[2 * kMlaKeyBlock];
    int nvalid[kMlaTileVectors];
    internal::MlaTileArgs args;
    args.q = p.q + (p.cu_seqlens_q[item.seq] + item.row_begin) * heads * width;
    args.block = block;
    args.rows = rows;
    args.row_bytes = static_cast<int>(row_bytes);
    args.q_scratch = q_scratch;
    args.nvalid = nvalid;
    args.latent = static_cast<int>(latent);
    args.width = static_cast<int>(width);
    args.scale = p.softmax_scale;
    args.m = m;
    args.l = l;
    args.o = out;
    args.scores = scores;
    const bool direct = ops.attend_rows != nullptr && p.kv_dtype == CacheDType::kBF16 &&
                        nqv <= internal::kMlaDirectVectors && latent % 16 == 0 && width % 16 == 0;
    if (direct && item.key_end <= pos0 + item.row_begin + 1) {
      RunDirectStreams(item, table, args, nvalid);
      FinalizeItem(nqv, latent, m, l, out, lse);
      return;
    }
    for (int64_t kb = item.key_begin; kb < item.key_end; kb += kMlaKeyBlock) {
      args.nk = static_cast<int>(std::min<int64_t>(kMlaKeyBlock, item.key_end - kb));
      const int ahead =
          static_cast<int>(std::min<int64_t>(kMlaKeyBlock, item.key_end - kb - args.nk));
      GatherRows(p, table, row_bytes, kb, args.nk + ahead, rows);
      args.rows_ahead = args.nk + ahead;
      if (direct) {
        args.nqv = static_cast<int>(nqv);
        SetVisibleKeys(item, heads, pos0, kb, args.nk, 0, args.nqv, nvalid);
        ops.attend_rows(args);
      } else {
        RunTiles(item, pos0, kb, nqv, args, block, nvalid);
      }
    }
    FinalizeItem(nqv, latent, m, l, out, lse);
  }

  // The direct path when every row of the item sees all its keys (decode). Attention
  // does not depend on the order of the keys, so each block takes kMlaKeyBlock / kStreams
  // keys from each of kStreams far-apart parts of the range: reading several places at
  // once keeps more DRAM requests in flight than walking one contiguous run, and with
  // few heads DRAM is what bounds this loop. args.rows must hold 2 · kMlaKeyBlock rows.
  void RunDirectStreams(const MlaWorkItem& item, const int32_t* table, internal::MlaTileArgs& args,
                        int* nvalid) const {
    constexpr int kStreams = 16;  // 3 keys each: measured best of 2, 4, 8, 16, 24, 48
    constexpr int kChunk = kMlaKeyBlock / kStreams;
    const uint8_t** rows = const_cast<const uint8_t**>(args.rows);
    const int64_t part = (item.key_end - item.key_begin + kStreams - 1) / kStreams;
    // Rows of the keys at offset o of every part, written to dst; returns how many.
    auto gather = [&](int64_t o, const uint8_t** dst) {
      int n = 0;
      for (int s = 0; s < kStreams; ++s) {
        const int64_t begin = item.key_begin + s * part + o;
        const int64_t end = std::min(item.key_end, item.key_begin + (s + 1) * part);
        const int count = static_cast<int>(std::clamp<int64_t>(end - begin, 0, kChunk));
        GatherRows(p, table, row_bytes, begin, count, dst + n);
        n += count;
      }
      return n;
    };
    int nk = gather(0, rows);
    for (int64_t o = 0; o < part; o += kChunk) {
      const int ahead = o + kChunk < part ? gather(o + kChunk, rows + nk) : 0;
      args.nk = nk;
      args.rows_ahead = nk + ahead;
      args.nqv = static_cast<int>(item.row_end - item.row_begin) * static_cast<int>(p.num_heads);
      std::fill(nvalid, nvalid + args.nqv, nk);
      ops.attend_rows(args);
      std::copy(rows + nk, rows + nk + ahead, rows);  // the next block's rows to the front
      nk = ahead;
    }
  }

  // The converted path for one key block: convert once, then every query vector that
  // sees any of it, kMlaTileVectors at a time. `item_args` describes the whole item.
  void RunTiles(const MlaWorkItem& item, int64_t pos0, int64_t kb, int64_t nqv,
                const internal::MlaTileArgs& item_args, float* block, int* nvalid) const {
    const int64_t heads = p.num_heads;
    // Rows before first_row end before key kb and see nothing of this block.
    const int64_t first_row = std::max<int64_t>(item.row_begin, kb - pos0);
    if (first_row >= item.row_end) return;
    (p.kv_dtype == CacheDType::kFp8E4M3 ? ops.convert_keys_fp8 : ops.convert_keys)(
        item_args.rows, item_args.nk, item_args.width, item_args.latent, block);
    // While the tiles compute, the kernel pulls the next block's rows into L2, a share per
    // call, so that the next conversion does not wait for DRAM.
    const int64_t v_first = (first_row - item.row_begin) * heads;
    const int64_t num_calls = (nqv - v_first + kMlaTileVectors - 1) / kMlaTileVectors;
    const int64_t row_lines = (row_bytes + 63) / 64;
    const int64_t ahead_lines = (item_args.rows_ahead - item_args.nk) * row_lines;
    internal::MlaTileArgs tile = item_args;
    for (int64_t v = v_first, i = 0; v < nqv; v += kMlaTileVectors, ++i) {
      tile.prefetch_begin = ahead_lines * i / num_calls;
      tile.prefetch_end = ahead_lines * (i + 1) / num_calls;
      tile.nqv = static_cast<int>(std::min<int64_t>(kMlaTileVectors, nqv - v));
      SetVisibleKeys(item, heads, pos0, kb, item_args.nk, v, tile.nqv, nvalid);
      tile.q = item_args.q + v * width;
      tile.m = item_args.m + v;
      tile.l = item_args.l + v;
      tile.o = item_args.o + v * item_args.latent;
      ops.attend_tile(tile);
    }
  }
};

// Merges the splits of one (row, head): lse = log Σ_s exp(lse_s), out = Σ_s
// exp(lse_s - lse)·out_s, computed relative to the largest lse_s so nothing overflows.
void CombineVector(int num_splits, int64_t split_stride_out, int64_t split_stride_lse,
                   int64_t latent, const float* part_out, const float* part_lse, float* out,
                   float* lse) {
  float max_lse = kNegInf;
  for (int s = 0; s < num_splits; ++s) max_lse = std::max(max_lse, part_lse[s * split_stride_lse]);
  float sum = 0.0f;
  for (int s = 0; s < num_splits; ++s) sum += std::exp(part_lse[s * split_stride_lse] - max_lse);
  const float total = max_lse + std::log(sum);
  *lse = total;
  std::fill(out, out + latent, 0.0f);
  for (int s = 0; s < num_splits; ++s) {
    const float w = std::exp(part_lse[s * split_stride_lse] - total);
    if (w == 0.0f) continue;  // an empty split: its output is zero, skip the pass
    const float* o = part_out + s * split_stride_out;
    for (int64_t d = 0; d < latent; ++d) out[d] += w * o[d];
  }
}

void CombineRows(const MlaAttentionParams& p, const MlaSplitPlan& plan, const float* part_out,
                 const float* part_lse, int64_t begin, int64_t end) {
  const int64_t heads = p.num_heads;
  const int64_t latent = p.kv_lora_rank;
  int64_t offset = 0;  // flat row index of the current group's first row
  for (const MlaCombineGroup& g : plan.combines) {
    const int64_t rows = g.row_end - g.row_begin;
    for (int64_t r = std::max(begin - offset, int64_t{0}); r < rows && offset + r < end; ++r) {
      const int64_t out_row = p.cu_seqlens_q[g.seq] + g.row_begin + r;
      const int64_t part_row = g.partial_row + r;
      for (int64_t h = 0; h < heads; ++h) {
        CombineVector(g.num_splits, rows * heads * latent, rows * heads, latent,
                      part_out + (part_row * heads + h) * latent, part_lse + part_row * heads + h,
                      p.out + (out_row * heads + h) * latent, p.lse + out_row * heads + h);
      }
    }
    offset += rows;
    if (offset >= end) break;
  }
}

}  // namespace

void MlaAttentionWorkspace::Reserve(AlignedBuffer& buffer, size_t bytes) {
  if (buffer.size() < bytes) buffer = AlignedBuffer(bytes);
}

absl::Status ValidateMlaAttentionParams(const MlaAttentionParams& p) {
  if (p.batch < 0) return Invalid(absl::StrCat("batch ", p.batch, " < 0"));
  if (p.num_heads < 1 || p.kv_lora_rank < 1 || p.rope_dim < 0 || p.block_size < 1) {
    return Invalid(absl::StrCat("bad dims: heads ", p.num_heads, ", L ", p.kv_lora_rank, ", R ",
                                p.rope_dim, ", block_size ", p.block_size));
  }
  if (p.num_blocks < 0 || p.max_blocks_per_seq < 0) {
    return Invalid("negative num_blocks or max_blocks_per_seq");
  }
  if (!std::isfinite(p.softmax_scale)) return Invalid("softmax_scale is not finite");
  if (p.batch == 0) return absl::OkStatus();
  if (p.cu_seqlens_q == nullptr || p.seq_lens == nullptr || p.q_pos0 == nullptr) {
    return Invalid("null cu_seqlens_q, seq_lens or q_pos0");
  }
  if (p.cu_seqlens_q[0] != 0) return Invalid("cu_seqlens_q[0] != 0");
  if (p.max_blocks_per_seq > 0 && p.block_table == nullptr) return Invalid("null block_table");
  for (int64_t j = 0; j < p.batch; ++j) {
    const absl::Status status = ValidateSequence(p, j);
    if (!status.ok()) return status;
  }
  if (p.cu_seqlens_q[p.batch] > 0 &&
      (p.q == nullptr || p.out == nullptr || p.lse == nullptr || p.kv_cache == nullptr)) {
    return Invalid("null q, out, lse or kv_cache");
  }
  return absl::OkStatus();
}

absl::Status MlaAttention(const MlaAttentionParams& p, ThreadPool* pool,
                          MlaAttentionWorkspace* workspace, const MlaAttentionOptions& options) {
  const absl::Status valid = ValidateMlaAttentionParams(p);
  if (!valid.ok()) return valid;
  if (p.batch == 0 || p.cu_seqlens_q[p.batch] == 0) return absl::OkStatus();
  MlaAttentionWorkspace local;
  MlaAttentionWorkspace& ws = workspace != nullptr ? *workspace : local;

  ws.seqs_.resize(p.batch);
  for (int64_t j = 0; j < p.batch; ++j) {
    ws.seqs_[j] = MlaSeqWork{p.cu_seqlens_q[j + 1] - p.cu_seqlens_q[j], p.q_pos0[j]};
  }
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  MlaSplitOptions split;
  split.num_workers = threads;
  split.items_per_worker = options.items_per_worker;
  split.split_kv = options.split_kv;
  split.min_keys_per_split = options.min_keys_per_split;
  split.key_align = kMlaKeyBlock;
  PlanMlaSplits(ws.seqs_, split, &ws.plan_);
  const MlaSplitPlan& plan = ws.plan_;

  const int64_t heads = p.num_heads;
  const int64_t latent = p.kv_lora_rank;
  const int64_t width = p.kv_lora_rank + p.rope_dim;
  const MlaKernelOps& ops = SelectOps(static_cast<int>(width));
  const ItemRunner runner{p, ops, width, CacheRowBytes(p.kv_dtype, latent, p.rope_dim),
                          ops.block_floats(static_cast<int>(width), static_cast<int>(latent))};
  // Per slot: converted key block, tile scores, direct-path queries, then m and l of the
  // largest item.
  const int64_t slot_floats =
      (runner.block_floats + kMlaTileVectors * kMlaKeyBlock + internal::kMlaDirectVectors * width +
       2 * plan.max_item_rows * heads + 15) /
      16 * 16;
  const int64_t num_items = static_cast<int64_t>(plan.items.size());
  const int64_t slots = std::min<int64_t>(threads, num_items);
  MlaAttentionWorkspace::Reserve(ws.scratch_, slots * slot_floats * sizeof(float));
  MlaAttentionWorkspace::Reserve(ws.partial_out_,
                                 plan.num_partial_rows * heads * latent * sizeof(float));
  MlaAttentionWorkspace::Reserve(ws.partial_lse_, plan.num_partial_rows * heads * sizeof(float));
  float* part_out = ws.partial_out_.as<float>();
  float* part_lse = ws.partial_lse_.as<float>();

  std::atomic<int64_t> next{0};
  auto work = [&](int64_t slot_begin, int64_t slot_end) {
    for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
      float* scratch = ws.scratch_.as<float>() + slot * slot_floats;
      for (int64_t i = next.fetch_add(1); i < num_items; i = next.fetch_add(1)) {
        const MlaWorkItem& item = plan.items[i];
        const int64_t row =
            item.partial_row >= 0 ? item.partial_row : p.cu_seqlens_q[item.seq] + item.row_begin;
        float* out = (item.partial_row >= 0 ? part_out : p.out) + row * heads * latent;
        float* lse = (item.partial_row >= 0 ? part_lse : p.lse) + row * heads;
        runner.Run(item, out, lse, scratch);
      }
    }
  };
  auto combine = [&](int64_t begin, int64_t end) {
    CombineRows(p, plan, part_out, part_lse, begin, end);
  };
  if (pool == nullptr || slots <= 1) {
    work(0, 1);
    combine(0, plan.combine_rows);
  } else {
    pool->ParallelFor(slots, work);
    if (plan.combine_rows > 0) pool->ParallelFor(plan.combine_rows, combine);
  }
  return absl::OkStatus();
}

}  // namespace mla::cpu
