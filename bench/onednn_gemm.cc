#include "bench/onednn_gemm.h"

#include <oneapi/dnnl/dnnl.hpp>

#include "engine/common/bf16.h"

namespace mla::bench {

using dnnl::memory;

struct OneDnnGemm::State {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  memory::desc src_md, dst_md;
  std::unique_ptr<dnnl::matmul> matmul;
  std::vector<memory> weights;  // One reordered copy per input copy.
  std::vector<bf16_t> x_bf16;
  int64_t n = 0, in = 0, out = 0;
};

OneDnnGemm::OneDnnGemm(int64_t n, int64_t in, int64_t out, const std::vector<Matrix>& weights)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.n = n;
  s.in = in;
  s.out = out;
  s.src_md = memory::desc({n, in}, memory::data_type::bf16, memory::format_tag::ab);
  s.dst_md = memory::desc({n, out}, memory::data_type::f32, memory::format_tag::ab);
  const memory::desc any_wei({in, out}, memory::data_type::bf16, memory::format_tag::any);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(s.src_md, any_wei, s.dst_md), s.engine);
  s.matmul = std::make_unique<dnnl::matmul>(pd);
  // Our [out, in] row-major weight is oneDNN's [in, out] matrix in "ba" order.
  const memory::desc user_wei({in, out}, memory::data_type::bf16, memory::format_tag::ba);
  for (const Matrix& w : weights) {
    memory user(user_wei, s.engine, const_cast<bf16_t*>(w.bf16()));
    memory packed(pd.weights_desc(), s.engine);
    dnnl::reorder(user, packed).execute(s.stream, user, packed);
    s.weights.push_back(packed);
  }
  s.stream.wait();
  s.x_bf16.resize(static_cast<size_t>(n * in));
}

OneDnnGemm::~OneDnnGemm() = default;

void OneDnnGemm::Run(const float* x, float* y, size_t copy) {
  State& s = *state_;
  for (size_t i = 0; i < s.x_bf16.size(); ++i) s.x_bf16[i] = FloatToBf16(x[i]);
  memory src(s.src_md, s.engine, s.x_bf16.data());
  memory dst(s.dst_md, s.engine, y);
  s.matmul->execute(s.stream, {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_WEIGHTS, s.weights[copy % s.weights.size()]},
                               {DNNL_ARG_DST, dst}});
  s.stream.wait();
}

}  // namespace mla::bench
