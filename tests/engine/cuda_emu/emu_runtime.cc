#include "tests/engine/cuda_emu/emu_runtime.h"

#include <ucontext.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"

// The race-checking build (MLA_EMU_TSAN): the kernels are compiled with ThreadSanitizer
// and this file, uninstrumented, tells it what the fibers are and where they synchronize,
// so that shared and global memory accessed by two threads without a barrier (or a
// warp-wide instruction) between them is reported, as compute-sanitizer's racecheck would.
#if defined(MLA_EMU_TSAN)
#include <sanitizer/tsan_interface.h>
#define MLA_TSAN(call) call
#else
#define MLA_TSAN(call)
#endif

namespace mla::cuda::emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;

// A switch between fibers is a few hundred per warp-wide instruction; swapcontext also
// saves the signal mask (a system call each time), so x86-64 switches its own way: push
// the callee-saved registers, swap stack pointers, pop them (the System V ABI leaves the
// rest to the caller).
#if defined(__x86_64__)
constexpr bool kFastSwitch = true;
extern "C" void mla_emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl mla_emu_switch
  .type mla_emu_switch, @function
mla_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size mla_emu_switch, .-mla_emu_switch
)");
#else
constexpr bool kFastSwitch = false;
void mla_emu_switch(void**, void*) {}
#endif
constexpr int kMaxBarriers = 16;

struct Copy {
  void* dst;
  const void* src;
  int bytes;
  bool valid;
};

void DoCopy(const Copy& c) {
  if (c.valid) {
    std::memcpy(c.dst, c.src, c.bytes);
  } else {
    std::memset(c.dst, 0, c.bytes);
  }
}

// Fiber ids without allocation: the scheduler and the fibers both change these lists, and
// in the race-checking build an allocation or memmove (intercepted by ThreadSanitizer even
// here) would be reported as the emulator's own race.
struct FiberList {
  int size = 0;
  int ids[1024];  // at most a CTA's threads; left uninitialized
  void Push(int id) { ids[size++] = id; }
};

struct Deferred {
  void (*run)(const void*);
  std::vector<unsigned char> context;
};

// A fiber waits until *gen differs from `seen`.
struct Fiber {
  ucontext_t context;  // without kFastSwitch
  void* sp = nullptr;  // with kFastSwitch: the saved stack pointer
  std::unique_ptr<char[]> stack;
  uint3 tid{};
  int linear = 0;
  bool done = false;
  const uint64_t* wait_gen = nullptr;
  uint64_t wait_seen = 0;
  // What it waits at, formatted only for a deadlock's report: a barrier (id, threads) or
  // a collective (group size, kind).
  bool waits_at_barrier = false;
  uint64_t wait_a = 0;
  uint64_t wait_b = 0;
  std::vector<Copy> open_copies;
  std::deque<std::vector<Copy>> copy_groups;
  void* tsan_fiber = nullptr;  // MLA_EMU_TSAN: kept across CTAs, as the stack
};

// The rendezvous of a warp or warpgroup: operands and results double-buffered by the
// generation's parity, since a member may enter the next collective before the others have
// read this one's results (it cannot complete it before they arrive, so two buffers do).
struct Group {
  int arrived = 0;
  uint64_t gen = 0;
  uint64_t kind = 0;
  unsigned char in[2][128][kMaxOperandBytes];
  unsigned char out[2][128][kMaxOperandBytes];
  std::vector<Deferred> deferred;  // warpgroups: wgmma products until the wait
  FiberList waiters;               // fibers blocked here, made ready when it completes
};

struct BarrierState {
  int arrived = 0;
  int expected = 0;
  uint64_t gen = 0;
  FiberList waiters;
};

struct Cta {
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  int threads = 0;
  std::vector<Fiber>* fibers = nullptr;
  std::vector<Group*> warps;  // from State's pools, reset for each CTA
  std::vector<Group*> warpgroups;
  BarrierState barriers[kMaxBarriers];
  FiberList ready;  // fibers that can run; the scheduler takes one at random
  std::string error;
};

struct State {
  ucontext_t scheduler;
  void* scheduler_sp = nullptr;
  Cta* cta = nullptr;
  Fiber* current = nullptr;
  const std::function<void()>* kernel = nullptr;
  unsigned char* shared = nullptr;  // 1024-byte aligned, as the hardware's window
  size_t shared_bytes = 0;
  std::vector<Fiber> fibers;
  std::vector<std::unique_ptr<Group>> warp_pool;
  std::vector<std::unique_ptr<Group>> warpgroup_pool;
  std::map<uintptr_t, size_t> allocations;
  std::map<const void*, int> allowed_shared;
  int64_t launches = 0;
  void* tsan_scheduler = nullptr;
  int grid_sync = 0;  // MLA_EMU_TSAN: orders launches, CTAs and the host around them
};

State& S() {
  static State* s = new State();
  return *s;
}

Fiber& Current() {
  State& s = S();
  if (s.current == nullptr) {
    std::fprintf(stderr, "cuda emulator: a device function ran outside a kernel\n");
    std::abort();
  }
  return *s.current;
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
void Yield() {
  State& s = S();
  Fiber* f = s.current;
  MLA_TSAN(__tsan_switch_to_fiber(s.tsan_scheduler, __tsan_switch_to_fiber_no_sync));
  if constexpr (kFastSwitch) {
    mla_emu_switch(&f->sp, s.scheduler_sp);
  } else {
    swapcontext(&f->context, &s.scheduler);
  }
}

// Blocks the current fiber until *gen moves past `seen`; it waits in `waiters` until the
// fiber that completes the barrier or collective makes it ready (Wake).
void BlockUntilChanged(const uint64_t* gen, uint64_t seen, FiberList& waiters, bool barrier,
                       uint64_t a, uint64_t b) {
  Fiber& f = Current();
  waiters.Push(f.linear);
  f.wait_gen = gen;
  f.wait_seen = seen;
  f.waits_at_barrier = barrier;
  f.wait_a = a;
  f.wait_b = b;
  while (*gen == seen) Yield();
  f.wait_gen = nullptr;
}

// Runs `f` until it yields or finishes. Its own function: swapcontext returns twice, as
// setjmp, which callers' locals must not see.
__attribute__((noinline)) void Resume(Fiber& f) {
  State& s = S();
  s.current = &f;
  MLA_TSAN(__tsan_switch_to_fiber(f.tsan_fiber, __tsan_switch_to_fiber_no_sync));
  if constexpr (kFastSwitch) {
    mla_emu_switch(&s.scheduler_sp, f.sp);
  } else {
    swapcontext(&s.scheduler, &f.context);
  }
  s.current = nullptr;
}

void Wake(FiberList& waiters) {
  FiberList& ready = S().cta->ready;
  for (int i = 0; i < waiters.size; ++i) ready.Push(waiters.ids[i]);
  waiters.size = 0;
}

void FiberEntry() {
  State& s = S();
  MLA_TSAN(__tsan_acquire(&s.grid_sync));
  (*s.kernel)();
  MLA_TSAN(__tsan_release(&s.grid_sync));
  s.current->done = true;
  if constexpr (kFastSwitch) {
    for (;;) Yield();  // never resumed: the fiber is done
  }
  // Without kFastSwitch, uc_link returns to the scheduler.
}

// A new context for `f` that runs the kernel's body (its own function: getcontext returns
// twice).
__attribute__((noinline)) void Start(Fiber& f) {
  MLA_TSAN(if (f.tsan_fiber == nullptr) f.tsan_fiber = __tsan_create_fiber(0));
  if constexpr (kFastSwitch) {
    // The stack mla_emu_switch pops on the first switch: six registers, then FiberEntry as
    // the return address, placed so that FiberEntry starts with the stack aligned as
    // after a call (rsp + 8 a multiple of 16).
    auto top = reinterpret_cast<uintptr_t>(f.stack.get() + kStackBytes) & ~uintptr_t{15};
    auto* slots = reinterpret_cast<void**>(top - 16);
    slots[0] = reinterpret_cast<void*>(&FiberEntry);
    for (int i = 1; i <= 6; ++i) slots[-i] = nullptr;
    f.sp = slots - 6;
    return;
  }
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack.get();
  f.context.uc_stack.ss_size = kStackBytes;
  f.context.uc_link = &S().scheduler;
  makecontext(&f.context, FiberEntry, 0);
}

// `n` groups from `pool` (grown as needed), reset for a new CTA.
std::vector<Group*> Groups(std::vector<std::unique_ptr<Group>>& pool, int n) {
  std::vector<Group*> groups;
  for (int i = 0; i < n; ++i) {
    if (i == static_cast<int>(pool.size())) pool.push_back(std::make_unique<Group>());
    Group& g = *pool[i];
    g.arrived = 0;
    g.gen = 0;
    g.kind = 0;
    g.deferred.clear();
    g.waiters.size = 0;
    groups.push_back(&g);
  }
  return groups;
}

}  // namespace

const uint3& ThreadIdx() { return Current().tid; }
const uint3& BlockIdx() {
  Current();
  return S().cta->block_idx;
}
const dim3& BlockDim() {
  Current();
  return S().cta->block_dim;
}
const dim3& GridDim() {
  Current();
  return S().cta->grid_dim;
}

void Fail(const std::string& message) {
  State& s = S();
  Fiber& f = Current();
  if (s.cta->error.empty()) {
    s.cta->error = absl::StrCat("thread (", f.tid.x, ", ", f.tid.y, ", ", f.tid.z, ") of CTA (",
                                s.cta->block_idx.x, ", ", s.cta->block_idx.y, ", ",
                                s.cta->block_idx.z, "): ", message);
  }
  // Never resumed: the scheduler stops at the error.
  for (;;) Yield();
}

void Barrier(int id, int count) {
  State& s = S();
  if (id < 0 || id >= kMaxBarriers) Fail(absl::StrCat("barrier id ", id, " out of range"));
  if (count <= 0 || count % 32 != 0 || count > s.cta->threads) {
    Fail(absl::StrCat("barrier ", id, " for ", count, " threads (a multiple of 32, at most ",
                      s.cta->threads, ")"));
  }
  BarrierState& b = s.cta->barriers[id];
  if (b.arrived == 0) {
    b.expected = count;
  } else if (b.expected != count) {
    Fail(absl::StrCat("barrier ", id, " for ", count, " threads while others wait for ",
                      b.expected));
  }
  const uint64_t seen = b.gen;
  MLA_TSAN(__tsan_release(&b));
  if (++b.arrived == b.expected) {
    b.arrived = 0;
    ++b.gen;
    Wake(b.waiters);
  } else {
    BlockUntilChanged(&b.gen, seen, b.waiters, true, static_cast<uint64_t>(id),
                      static_cast<uint64_t>(count));
  }
  MLA_TSAN(__tsan_acquire(&b));
}

unsigned char* SharedBase() { return S().shared; }

uint32_t SharedOffset(const void* p) {
  State& s = S();
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < s.shared || c > s.shared + s.shared_bytes) {
    Fail("a shared-memory address outside the launch's dynamic shared memory");
  }
  return static_cast<uint32_t>(c - s.shared);
}

unsigned char* SharedAt(uint32_t offset, size_t bytes) {
  State& s = S();
  if (offset + bytes > s.shared_bytes) {
    Fail(absl::StrCat("shared bytes ", offset, " .. ", offset + bytes, " past the launch's ",
                      s.shared_bytes));
  }
  return s.shared + offset;
}

bool AsyncEarly() {
  static const bool early = [] {
    const char* v = std::getenv("MLA_EMU_ASYNC");
    return v != nullptr && std::string(v) == "early";
  }();
  return early;
}

void CollectiveBytes(int group_size, uint64_t kind, const void* in, size_t in_bytes, void* out,
                     size_t out_bytes, CollectiveFn compute, const void* context) {
  State& s = S();
  Fiber& f = Current();
  if (group_size != 32 && group_size != 128) Fail("collective of an unsupported group size");
  if (s.cta->threads % group_size != 0) {
    Fail(absl::StrCat("a ", group_size, "-thread collective in a CTA of ", s.cta->threads));
  }
  auto& groups = group_size == 32 ? s.cta->warps : s.cta->warpgroups;
  Group& g = *groups[f.linear / group_size];
  const int rank = f.linear % group_size;
  if (g.arrived == 0) {
    g.kind = kind;
  } else if (g.kind != kind) {
    Fail(absl::StrCat("lanes diverge at a ", group_size, "-thread instruction: kind ", kind,
                      " while others run ", g.kind));
  }
  const uint64_t seen = g.gen;
  const int parity = static_cast<int>(seen & 1);
  std::memcpy(g.in[parity][rank], in, in_bytes);
  MLA_TSAN(__tsan_release(&g));
  if (++g.arrived == group_size) {
    g.arrived = 0;
    MLA_TSAN(__tsan_acquire(&g));
    compute(g.in[parity], g.out[parity], context);
    MLA_TSAN(__tsan_release(&g));  // what compute wrote, for every member
    ++g.gen;
    Wake(g.waiters);
  } else {
    BlockUntilChanged(&g.gen, seen, g.waiters, false, static_cast<uint64_t>(group_size), kind);
  }
  MLA_TSAN(__tsan_acquire(&g));
  std::memcpy(out, g.out[parity][rank], out_bytes);
}

void CopyAsync(void* shared_dst, const void* global_src, int bytes, bool valid) {
  SharedAt(SharedOffset(shared_dst), bytes);
  if (valid && !InsideAllocation(global_src, bytes)) {
    Fail("cp.async from global memory outside every allocation");
  }
  const Copy c{shared_dst, global_src, bytes, valid};
  if (AsyncEarly()) {
    DoCopy(c);
  } else {
    Current().open_copies.push_back(c);
  }
}

void CommitCopies() {
  Fiber& f = Current();
  f.copy_groups.push_back(std::move(f.open_copies));
  f.open_copies.clear();
}

void WaitCopies(int pending) {
  Fiber& f = Current();
  while (static_cast<int>(f.copy_groups.size()) > pending) {
    for (const Copy& c : f.copy_groups.front()) DoCopy(c);
    f.copy_groups.pop_front();
  }
}

void DeferToWarpgroupWait(void (*run)(const void*), const void* context, size_t context_bytes) {
  if (AsyncEarly()) {
    run(context);
    return;
  }
  State& s = S();
  Group& g = *s.cta->warpgroups[Current().linear / 128];
  const auto* c = static_cast<const unsigned char*>(context);
  g.deferred.push_back({run, std::vector<unsigned char>(c, c + context_bytes)});
}

void WaitAsyncGroup() {
  // Every member waits; the last to arrive runs the products (they read shared memory as
  // it is now, the latest a wgmma may read it).
  struct None {};
  Collective<None, None>(128, 0x77616974 /* "wait" */, None{}, [](const void*, void*, const void*) {
    State& s = S();
    Group& g = *s.cta->warpgroups[s.current->linear / 128];
    std::vector<Deferred> work = std::move(g.deferred);
    g.deferred.clear();
    for (const Deferred& d : work) d.run(d.context.data());
  });
}

void* Allocate(size_t bytes) {
  // 256-byte aligned as cudaMalloc's; a byte more so that a zero-size request is unique.
  void* p = std::aligned_alloc(256, (bytes + 256) / 256 * 256);
  if (p != nullptr) S().allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
  return p;
}

void Free(void* p) {
  if (p == nullptr) return;
  S().allocations.erase(reinterpret_cast<uintptr_t>(p));
  std::free(p);
}

size_t AllocatedBytes() {
  size_t total = 0;
  for (const auto& [at, bytes] : S().allocations) total += bytes;
  return total;
}

bool InsideAllocation(const void* p, size_t bytes) {
  const auto& a = S().allocations;
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  auto it = a.upper_bound(at);
  if (it == a.begin()) return false;
  --it;
  return at + bytes <= it->first + it->second;
}

void AllowSharedBytes(const void* func, int bytes) { S().allowed_shared[func] = bytes; }

absl::Status CheckSharedBytes(const void* func, size_t bytes) {
  if (bytes <= 48 * 1024) return absl::OkStatus();
  const auto& allowed = S().allowed_shared;
  const auto it = allowed.find(func);
  if (it != allowed.end() && static_cast<size_t>(it->second) >= bytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "cuda emulator: ", bytes, " bytes of dynamic shared memory without the kernel's opt-in"));
}

absl::Status OnStream(cudaStream_t stream, std::function<absl::Status()> work) {
  auto* s = reinterpret_cast<Stream*>(stream);
  if (s != nullptr && s->capture != nullptr) {
    s->capture->work.push_back(std::move(work));
    return absl::OkStatus();
  }
  return work();
}

absl::Status RunFunction(const std::function<void()>& kernel, dim3 grid, dim3 block,
                         size_t shared_bytes) {
  State& s = S();
  if (s.cta != nullptr) return absl::InternalError("cuda emulator: a launch inside a kernel");
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (threads <= 0 || threads > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("cuda emulator: ", threads, " threads"));
  }
  if (shared_bytes > kMaxSharedBytesPerBlock) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda emulator: ", shared_bytes, " bytes of shared memory per CTA"));
  }
  ++s.launches;
  MLA_TSAN(if (s.tsan_scheduler == nullptr) s.tsan_scheduler = __tsan_get_current_fiber());
  MLA_TSAN(__tsan_release(&s.grid_sync));  // the host's writes, for the kernel
  static unsigned char* shared = [] {
    return static_cast<unsigned char*>(std::aligned_alloc(1024, kMaxSharedBytesPerBlock));
  }();
  s.shared = shared;
  s.shared_bytes = shared_bytes;
  s.kernel = &kernel;
  if (static_cast<int>(s.fibers.size()) < threads) s.fibers.resize(threads);
  std::vector<dim3> ctas;
  for (unsigned z = 0; z < grid.z; ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) ctas.push_back(dim3(x, y, z));
    }
  }
  std::mt19937 rng(static_cast<uint32_t>(s.launches));
  std::shuffle(ctas.begin(), ctas.end(), rng);
  absl::Status status;
  for (const dim3& idx : ctas) {
    Cta cta;
    cta.block_idx = uint3{idx.x, idx.y, idx.z};
    cta.block_dim = block;
    cta.grid_dim = grid;
    cta.threads = threads;
    cta.fibers = &s.fibers;
    cta.warps = Groups(s.warp_pool, (threads + 31) / 32);
    cta.warpgroups = Groups(s.warpgroup_pool, (threads + 127) / 128);
    std::memset(shared, 0xff, shared_bytes);  // NaN in every float and bf16 not written
    MLA_TSAN(__tsan_release(&s.grid_sync));   // before the CTA's threads
    s.cta = &cta;
    for (int t = 0; t < threads; ++t) {
      Fiber& f = s.fibers[t];
      if (!f.stack) f.stack.reset(new char[kStackBytes]);
      f.tid =
          uint3{static_cast<unsigned>(t % block.x), static_cast<unsigned>(t / block.x % block.y),
                static_cast<unsigned>(t / (block.x * block.y))};
      f.linear = t;
      f.done = false;
      f.wait_gen = nullptr;
      f.open_copies.clear();
      f.copy_groups.clear();
      Start(f);
    }
    for (int t = 0; t < threads; ++t) cta.ready.Push(t);
    while (cta.ready.size > 0 && cta.error.empty()) {
      // A random ready fiber: warps interleave differently from run to run of a launch.
      const int pick = static_cast<int>(rng() % static_cast<uint32_t>(cta.ready.size));
      const int t = cta.ready.ids[pick];
      cta.ready.ids[pick] = cta.ready.ids[--cta.ready.size];
      Resume(s.fibers[t]);
    }
    if (cta.error.empty()) {
      for (int t = 0; t < threads; ++t) {
        const Fiber& f = s.fibers[t];
        if (f.done) continue;
        if (cta.error.empty()) cta.error = "deadlock: no thread can run;";
        if (f.waits_at_barrier) {
          absl::StrAppend(&cta.error, " thread ", t, " waits at barrier ", f.wait_a, " (", f.wait_b,
                          " threads);");
        } else {
          absl::StrAppend(&cta.error, " thread ", t, " waits at a ", f.wait_a,
                          "-thread instruction (kind ", f.wait_b, ");");
        }
      }
    }
    s.cta = nullptr;
    MLA_TSAN(__tsan_acquire(&s.grid_sync));  // the kernel's writes, for the host
    if (!cta.error.empty()) {
      status = absl::InternalError(
          absl::StrCat("cuda emulator: CTA (", idx.x, ", ", idx.y, ", ", idx.z, "): ", cta.error));
      break;
    }
  }
  return status;
}

}  // namespace mla::cuda::emu
