// Seed derivation for reproducible data pipelines.
//
// Every random decision in datasets/ (a synthetic sample, an epoch's shuffle,
// one sample's augmentation) draws from its own Generator seeded with
// derive_seed(seed, a, b, ...). The stream for a sample therefore depends only
// on (seed, epoch, index), never on which thread produced it or in what
// order, so results do not change with the number of loader workers and a run
// resumed mid-epoch replays exactly the same data.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "tensor/random.h"

namespace crfseg::data {

// SplitMix64's finaliser: a bijection of 64-bit words whose output bits each
// depend on every input bit (Steele, Lea, Flood 2014).
constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Mixes a base seed with a list of integers (a domain tag, an epoch, an index).
// Generator uses only the low 32 bits, which splitmix64 mixes fully.
constexpr uint64_t derive_seed(uint64_t seed, std::initializer_list<uint64_t> parts) {
  uint64_t h = splitmix64(seed);
  for (uint64_t p : parts) h = splitmix64(h ^ splitmix64(p + 0x632BE59BD9B4E019ull));
  return h;
}

// Domain tags, so that e.g. the shuffle of epoch 3 and the augmentation of
// sample 3 never share a stream.
enum class SeedDomain : uint64_t { synthetic = 1, shuffle = 2, augment = 3, split = 4 };

constexpr uint64_t derive_seed(uint64_t seed, SeedDomain domain, std::initializer_list<uint64_t> parts = {}) {
  uint64_t h = derive_seed(seed, {static_cast<uint64_t>(domain)});
  for (uint64_t p : parts) h = splitmix64(h ^ splitmix64(p + 0x632BE59BD9B4E019ull));
  return h;
}

// An unbiased integer in [0, n) for 1 <= n <= 2^32: draws are rejected from
// the top partial block of 2^32 values, so every result is equally likely.
inline int64_t uniform_index(Generator& gen, int64_t n) {
  const uint64_t range = static_cast<uint64_t>(n);
  const uint64_t limit = (uint64_t{1} << 32) - ((uint64_t{1} << 32) % range);
  uint64_t r;
  do {
    r = gen.next_u32();
  } while (r >= limit);
  return static_cast<int64_t>(r % range);
}

}  // namespace crfseg::data
