// Timing by named operation inside a backend (llama.cpp names each tensor with
// cb(tensor, "name", layer); we name each operation). The model tags every operation it
// issues with a name and a layer; when profiling is on the backend times each one and the
// profiler sums them per name, so a benchmark reads the real forward pass's breakdown.
// Off, an operation pays one predictable branch.
#ifndef MLA_ENGINE_BACKEND_OP_PROFILE_H_
#define MLA_ENGINE_BACKEND_OP_PROFILE_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mla {

// The name of an operation as the model issues it ("attn_q_a", "moe_experts", ...) and
// its layer (-1 outside the layers). `name` must be a string literal (kept by pointer).
struct Op {
  const char* name = "";
  int layer = -1;
};

struct OpTiming {
  std::string name;
  int64_t calls = 0;
  double seconds = 0.0;
};

class OpProfiler {
 public:
  // Times the enclosing operation when profiling is on.
  class Scope {
   public:
    Scope(OpProfiler* profiler, Op op);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    OpProfiler* profiler_;  // Null when off.
    const char* name_;
    std::chrono::steady_clock::time_point start_;
  };

  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  Scope Time(Op op) { return Scope(this, op); }
  void Add(const char* name, double seconds);
  // The sums since the last call, one entry per name in first-seen order; cleared.
  std::vector<OpTiming> Take();

 private:
  bool enabled_ = false;
  std::vector<const char*> names_;
  std::vector<OpTiming> timings_;
};

}  // namespace mla

#endif  // MLA_ENGINE_BACKEND_OP_PROFILE_H_
