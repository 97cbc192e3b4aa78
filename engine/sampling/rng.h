// A small deterministic random number generator with a documented bit stream, so that a
// seeded request produces the same tokens on every machine and compiler (the standard
// library's distributions are implementation-defined, so none is used).
//
// Generator: xoshiro256** 1.0 (Blackman & Vigna, 2018). Seeding: the four state words are
// the first four outputs of splitmix64 started at `seed` (the seeding the xoshiro authors
// recommend; it never yields the all-zero state in practice). Floats are built from the
// top bits of one 64-bit output.
#ifndef MLA_ENGINE_SAMPLING_RNG_H_
#define MLA_ENGINE_SAMPLING_RNG_H_

#include <array>
#include <cstdint>

namespace mla {

// One splitmix64 step: advances `state` by the golden-ratio increment and returns the
// mixed value.
uint64_t SplitMix64(uint64_t& state);

class Rng {
 public:
  explicit Rng(uint64_t seed);

  // The next 64 bits of the xoshiro256** stream.
  uint64_t Next();
  // (Next() >> 11) · 2^-53: uniform in [0, 1) on a 2^-53 grid. Consumes one output.
  double NextDouble();
  // (Next() >> 40) · 2^-24: uniform in [0, 1) on a 2^-24 grid. Consumes one output.
  float NextFloat();

  // The raw state, e.g. to checkpoint a sequence's stream.
  const std::array<uint64_t, 4>& state() const { return s_; }

 private:
  std::array<uint64_t, 4> s_;
};

}  // namespace mla

#endif  // MLA_ENGINE_SAMPLING_RNG_H_
