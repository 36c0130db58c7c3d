// PermutohedralLattice: build (embed; sort or hash the vertex keys;
// neighbour table, splat lists) and filter (splat, blur, slice). The math
// is in crf/permutohedral.h; the notes here are about the embedding's
// details and the data layout.
//
// Cost napkin for the CRF's bilateral lattice on a 256x256 RGB image (d = 5):
// N = 65536 points, each with 6 vertices; M <= 6 N lattice points (far fewer
// on natural images). One filter of C = 3 channels touches 6 N C values in
// splat and slice, and the blur, per direction, reads and writes the C
// values of each point with a neighbour along it (on a noisy image 976k
// points over the 6 directions, in 456k chains; the plain blur reads 3 M C
// and writes M C per direction): a few MB of gathers, 3-6 ms per filter.
// Test: build-crf/tests/test_crf -tc='*lattice*'; bench: build-crf/bench/bench_crf.
#include "crf/permutohedral.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "crf/lattice_steps.h"
#include "kernels/lattice_rules.h"
#include "tensor/error.h"

namespace crfseg::crf {

namespace {

// Lattices with fewer points fit the caches in any order; not renumbered.
constexpr int64_t kReorderPoints = 16384;

// A key's hash in two steps: a polynomial over its coordinates,
//   poly(key) = sum_k key[k] c^(dim - k)   (mod 2^64, coordinates sign-extended),
// then the murmur3 finaliser, so that the low bits used as the slot depend
// on every bit of every coordinate. The polynomial is linear in the key:
// poly(key + step) = poly(key) + poly(step), so the neighbour search hashes
// a lattice point's d + 1 neighbours with one addition each before mixing.
constexpr uint64_t kHashMultiplier = 0x9E3779B97F4A7C15ull;

uint64_t key_poly(const int32_t* key, int64_t dim) {
  uint64_t h = 0;
  for (int64_t k = 0; k < dim; ++k) h = (h + static_cast<uint64_t>(static_cast<int64_t>(key[k]))) * kHashMultiplier;
  return h;
}

uint64_t mix_hash(uint64_t h) {
  h ^= h >> 33;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 33);
}

uint64_t hash_key(const int32_t* key, int64_t dim) { return mix_hash(key_poly(key, dim)); }

bool same_key(const int32_t* a, const int32_t* b, int64_t dim) {
  for (int64_t k = 0; k < dim; ++k) {
    if (a[k] != b[k]) return false;
  }
  return true;
}

// Open-addressing (linear probing) set of dim-coordinate keys that numbers
// keys 0, 1, 2, ... in insertion order. It is sized once, for the most keys
// it will hold: the capacity is a power of two at least twice that, so
// probes stay short and it never rehashes. Each slot keeps the upper
// half of its key's hash as a tag: a probe compares coordinates (a cache
// miss into keys_) only when the tags agree, and a lookup of an absent key
// (most blur-neighbour lookups on sparse lattices) touches only slots_.
class KeyTable {
 public:
  KeyTable(int64_t dim, int64_t max_keys) : dim_(dim), max_keys_(max_keys) {
    int64_t capacity = 16;
    while (capacity < 2 * max_keys) capacity *= 2;
    slots_.assign(static_cast<size_t>(capacity), Slot{});
    keys_.reserve(static_cast<size_t>(max_keys * dim));
  }
  int64_t size() const { return size_; }
  const int32_t* key(int64_t index) const { return keys_.data() + index * dim_; }

  // The index of `key`, inserting it if absent (*inserted says which).
  int32_t insert(const int32_t* key, uint64_t hash, bool* inserted) {
    Slot& slot = slots_[locate(key, hash)];
    *inserted = slot.index < 0;
    if (*inserted) {
      CRFSEG_CHECK(size_ < max_keys_, ValueError, "PermutohedralLattice: key table sized for ", max_keys_,
                   " keys, asked to hold more");
      slot = {static_cast<int32_t>(size_++), static_cast<uint32_t>(hash >> 32)};
      keys_.insert(keys_.end(), key, key + dim_);
    }
    return slot.index;
  }
  // The index of `key`, or -1 when absent.
  int32_t find(const int32_t* key, uint64_t hash) const { return slots_[locate(key, hash)].index; }
  // Starts loading the slot a lookup of `hash` probes first (lookups are
  // cache misses into a table of several MB; issuing a batch of prefetches
  // before the lookups overlaps them).
  void prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash & (slots_.size() - 1)]); }

 private:
  struct Slot {
    int32_t index = -1;  // -1 = empty, else an index into keys_
    uint32_t tag = 0;    // hash >> 32
  };

  // The slot holding `key`, or the empty slot where it would go.
  size_t locate(const int32_t* key, uint64_t hash) const {
    const size_t mask = slots_.size() - 1;
    const uint32_t tag = static_cast<uint32_t>(hash >> 32);
    for (size_t i = hash & mask;; i = (i + 1) & mask) {
      const Slot& slot = slots_[i];
      if (slot.index < 0 || (slot.tag == tag && same_key(key, keys_.data() + slot.index * dim_, dim_))) return i;
    }
  }
  int64_t dim_, max_keys_;
  int64_t size_ = 0;
  CpuVector<Slot> slots_;
  CpuVector<int32_t> keys_;  // size_ x dim_
};

// A Bloom filter of the lattice's keys: "absent" is certain, "present"
// may be wrong (about 3% of absent keys here). The neighbour search asks it
// before probing the table: on a sparse lattice (a noisy image: 367k
// points, three in four of their up to 2 (d + 1) neighbours absent) most
// candidates stop here, in a filter of 8 bits per key (0.5 MiB for 393k
// keys, L2-resident) instead of a table of 8 MiB plus its keys. Blocked:
// both of a key's bits lie in one 64-byte block, one cache line per query.
class KeyFilter {
 public:
  explicit KeyFilter(int64_t keys) {
    int64_t blocks = 1;
    while (blocks * kBlockBits < keys * kBitsPerKey) blocks *= 2;
    words_.assign(static_cast<size_t>(blocks * kWordsPerBlock), 0);
    mask_ = static_cast<uint64_t>(blocks - 1);
  }
  // Hash bits: [0, 6) and [9, 15) pick the two bits within their words,
  // [6, 9) and [15, 18) the two words, [20, ...) the block.
  void add(uint64_t hash) {
    uint64_t* b = block(hash);
    b[(hash >> 6) & 7] |= uint64_t(1) << (hash & 63);
    b[(hash >> 15) & 7] |= uint64_t(1) << ((hash >> 9) & 63);
  }
  bool may_contain(uint64_t hash) const {
    const uint64_t* b = block(hash);
    return ((b[(hash >> 6) & 7] >> (hash & 63)) & (b[(hash >> 15) & 7] >> ((hash >> 9) & 63)) & 1) != 0;
  }

 private:
  static constexpr int64_t kBitsPerKey = 8, kWordsPerBlock = 8, kBlockBits = 64 * kWordsPerBlock;
  uint64_t* block(uint64_t hash) { return words_.data() + ((hash >> 20) & mask_) * kWordsPerBlock; }
  const uint64_t* block(uint64_t hash) const { return words_.data() + ((hash >> 20) & mask_) * kWordsPerBlock; }
  CpuVector<uint64_t> words_;
  uint64_t mask_ = 0;
};

// Small images stay on one thread: a parallel region costs microseconds
// (and far more on a loaded machine), more than embedding a few thousand points.
constexpr int64_t kParallelPoints = 4096;

// f.template operator()<kD>() with kD = d for the CRF's d = 2..5 (loops
// over a point's coordinates unroll), else with kD = 0 (d read at run time).
template <typename F>
decltype(auto) with_fixed_dim(int64_t d, const F& f) {
  switch (d) {
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    default: return f.template operator()<0>();
  }
}

// Step 1 of the build for all N points: keys ([N x (d + 1) x d]),
// barycentric weights ([N x (d + 1)]) and the directions of the simplex's
// own blur links ([N x (d + 1)]). Returns false if some coordinate is out
// of range. kD as in kernels::lattice_embed_point.
template <int kD>
bool embed_points_fixed(const double* features, int64_t N, int64_t d_any, const double* scale, int32_t* keys,
                        float* barycentric, uint8_t* up_dir) {
  const int64_t d = kD > 0 ? kD : d_any, d1 = d + 1;
  bool in_range = true;
#pragma omp parallel if (N >= kParallelPoints)
  {
    // Work arrays: on the stack for a fixed d, else on the heap.
    double elevated_fixed[kD + 1], bary_fixed[kD + 2];
    int64_t rem0_fixed[kD + 1], rank_fixed[kD + 1];
    std::vector<double> elevated_any(kD > 0 ? 0 : d1), bary_any(kD > 0 ? 0 : d + 2);
    std::vector<int64_t> rem0_any(kD > 0 ? 0 : d1), rank_any(kD > 0 ? 0 : d1);
    double* elevated = kD > 0 ? elevated_fixed : elevated_any.data();
    double* bary = kD > 0 ? bary_fixed : bary_any.data();
    int64_t* rem0 = kD > 0 ? rem0_fixed : rem0_any.data();
    int64_t* rank = kD > 0 ? rank_fixed : rank_any.data();
#pragma omp for schedule(static) reduction(&& : in_range)
    for (int64_t i = 0; i < N; ++i) {
      in_range = kernels::lattice_embed_point<kD>(features + i * d, d, scale, elevated, rem0, rank, bary, keys + i * d1 * d,
                                 barycentric + i * d1, up_dir != nullptr ? up_dir + i * d1 : nullptr) && in_range;
    }
  }
  return in_range;
}

// A stable LSD radix sort of `items` by bits [0, bits) of key(item), in
// as few passes of at most kRadixBits bits as there can be; `scratch` is a
// second buffer of the same size, and the sorted items end up in `items`.
// Each pass is parallel: each thread counts its own range of items, and
// scatters them to offsets that put the ranges in order, so the result is
// the sequential sort's for any thread count.
constexpr int kRadixBits = 11;
template <typename Item, typename Key>
void radix_pass(const CpuVector<Item>& items, CpuVector<Item>& sorted, int low, int width, const Key& key) {
  const int64_t kBuckets = int64_t(1) << width;
  const int64_t n = static_cast<int64_t>(items.size());
  std::vector<int64_t> start(static_cast<size_t>(omp_get_max_threads() * kBuckets));
#pragma omp parallel if (n >= kParallelPoints)
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    int64_t* mine = start.data() + t * kBuckets;
    std::fill(mine, mine + kBuckets, 0);
    for (int64_t i = begin; i < end; ++i) ++mine[(key(items[i]) >> low) & (kBuckets - 1)];
#pragma omp barrier
#pragma omp single
    {
      int64_t offset = 0;  // bucket-major, then thread
      for (int64_t b = 0; b < kBuckets; ++b) {
        for (int64_t u = 0; u < threads; ++u) {
          const int64_t c = start[u * kBuckets + b];
          start[u * kBuckets + b] = offset;
          offset += c;
        }
      }
    }
    for (int64_t i = begin; i < end; ++i) sorted[mine[(key(items[i]) >> low) & (kBuckets - 1)]++] = items[i];
  }
}
template <typename Item, typename Key>
void radix_sort(CpuVector<Item>& items, CpuVector<Item>& scratch, int bits, const Key& key) {
  const int passes = (bits + kRadixBits - 1) / kRadixBits;
  const int width = passes > 0 ? (bits + passes - 1) / passes : 0;
  for (int low = 0; low < bits; low += width) {
    radix_pass(items, scratch, low, width, key);
    items.swap(scratch);
  }
}

// detail::key_bounds for a fixed d (kD as in embed_points_fixed).
using detail::KeyBounds;
template <int kD>
KeyBounds key_bounds_fixed(const int32_t* keys, int64_t count, int64_t d_any) {
  const int64_t d = kD > 0 ? kD : d_any;
  KeyBounds b{std::vector<int32_t>(static_cast<size_t>(d), std::numeric_limits<int32_t>::max()),
              std::vector<int32_t>(static_cast<size_t>(d), std::numeric_limits<int32_t>::min())};
#pragma omp parallel if (count >= kParallelPoints)
  {
    // This thread's bounds: local arrays for a fixed d (in registers: they
    // cannot alias the keys), else vectors.
    int32_t lo_fixed[kD > 0 ? kD : 1], hi_fixed[kD > 0 ? kD : 1];
    std::vector<int32_t> lo_any(kD > 0 ? 0 : b.lo.size()), hi_any(kD > 0 ? 0 : b.hi.size());
    int32_t* lo = kD > 0 ? lo_fixed : lo_any.data();
    int32_t* hi = kD > 0 ? hi_fixed : hi_any.data();
    std::copy_n(b.lo.data(), d, lo);
    std::copy_n(b.hi.data(), d, hi);
#pragma omp for schedule(static) nowait
    for (int64_t e = 0; e < count; ++e) {
      for (int64_t k = 0; k < d; ++k) {
        lo[k] = std::min(lo[k], keys[e * d + k]);
        hi[k] = std::max(hi[k], keys[e * d + k]);
      }
    }
#pragma omp critical
    for (int64_t k = 0; k < d; ++k) {
      b.lo[k] = std::min(b.lo[k], lo[k]);
      b.hi[k] = std::max(b.hi[k], hi[k]);
    }
  }
  return b;
}

// rank[p] = the position of lattice point p (numbered first-seen) along a
// Z-order curve through its key, ties in first-seen order. Each coordinate
// is taken relative to its minimum and cut to its top `bits` bits. A coarse
// curve is enough to keep neighbours near: on a noisy 256^2 image the
// filters ran as fast with 8, 16 or 32 cells a side (d = 5) as with 64, and
// 16 (4 bits, 20-bit codes) sorts in two 10-bit radix passes instead of three.
struct ZOrder {
  CpuVector<int32_t> rank;       // rank[old index] = new index
  CpuVector<int32_t> old_index;  // its inverse
};
// key_of(p) gives lattice point p's d coordinates; `bounds` their range.
template <typename KeyOf>
ZOrder z_order_rank(int64_t M, int64_t d, const KeyBounds& bounds, const KeyOf& key_of) {
  const int bits = static_cast<int>(std::min<int64_t>(4, 32 / d));
  const std::vector<int32_t>& lo = bounds.lo;
  const std::vector<int32_t>& hi = bounds.hi;
  std::vector<int> shift(static_cast<size_t>(d));
  for (int64_t k = 0; k < d; ++k) {
    int width = 0;
    while (width < 33 && (static_cast<int64_t>(hi[k]) - lo[k]) >> width != 0) ++width;
    shift[k] = std::max(0, width - bits);
  }
  // The code interleaves the cut coordinates v_k (< 2^bits) bit by bit,
  // most significant first: bit b of v_k lands at b d + (d - 1 - k). The
  // table spread[k][v] holds v's bits already in place, so a code is d
  // lookups OR-ed together.
  std::vector<uint64_t> spread(static_cast<size_t>(d << bits));
  for (int64_t k = 0; k < d; ++k) {
    for (uint64_t v = 0; v < (uint64_t(1) << bits); ++v) {
      uint64_t placed = 0;
      for (int b = 0; b < bits; ++b) placed |= ((v >> b) & 1u) << (b * d + (d - 1 - k));
      spread[(k << bits) + v] = placed;
    }
  }
  // (code << 32 | p): sorting by the code bits alone, stably, keeps p's order on ties.
  CpuVector<uint64_t> items(static_cast<size_t>(M)), sorted(static_cast<size_t>(M));
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < M; ++p) {
    const int32_t* key = key_of(p);
    uint64_t code = 0;
    for (int64_t k = 0; k < d; ++k) {
      code |= spread[(k << bits) + (static_cast<uint64_t>(static_cast<int64_t>(key[k]) - lo[k]) >> shift[k])];
    }
    items[p] = code << 32 | static_cast<uint64_t>(p);
  }
  radix_sort(items, sorted, bits * static_cast<int>(d), [](uint64_t item) { return item >> 32; });
  ZOrder z{CpuVector<int32_t>(static_cast<size_t>(M)), CpuVector<int32_t>(static_cast<size_t>(M))};
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M; ++i) {
    z.old_index[i] = static_cast<int32_t>(items[i] & 0xffffffffu);
    z.rank[z.old_index[i]] = static_cast<int32_t>(i);
  }
  return z;
}

// The sorted build (LatticeOptions::sorted_build). Each vertex key gets an
// exact integer code: its stored coordinates, shifted to start at 1, as the
// digits of a mixed-radix number,
//   code(key) = sum_k (key[k] - lo[k] + 1) W_k,  W_0 = 1,  W_{k+1} = W_k R_k,
//   R_k = hi[k] - lo[k] + d + 2,
// whose radices leave room for every blur-neighbour candidate (a step
// u_j moves each stored coordinate by -1 or +d, so a candidate's digits
// lie in [0, R_k)). On that box the code is one-to-one and linear:
// code(key + u_j) = code(key) + step_j, a constant. Sorting the vertex
// entries by code groups equal keys, so the groups are the lattice points
// (numbered in code order, each group's entries in point order). And as
// adding step_j keeps the codes' order, the up neighbours along u_j come
// from merging the sorted codes with themselves shifted by step_j: two
// pointers walking one array, where the hash build probes a table of
// several MiB at random for each candidate. Used when the box holds fewer
// than 2^64 codes (a noisy 256^2 RGB image at the CRF's thetas needs 2^43).
struct CodeBox {
  std::vector<uint64_t> weight;  // W_k
  std::vector<uint64_t> step;    // [d + 1]: code(key + u_j) - code(key), mod 2^64
  uint64_t origin = 0;           // code(key) = sum_k key[k] W_k - origin
  int bits = 0;                  // every code is below 2^bits
};
std::optional<CodeBox> code_box(const KeyBounds& b, int64_t d) {
  CodeBox box{std::vector<uint64_t>(static_cast<size_t>(d)), std::vector<uint64_t>(static_cast<size_t>(d + 1)), 0, 0};
  box.bits = kernels::lattice_code_box(b.lo.data(), b.hi.data(), d, box.weight.data(), box.step.data(), &box.origin);
  if (box.bits < 0) return std::nullopt;
  return box;
}

// The sorted build's step 2: sorts the E vertex entries (keys [E x d]) by
// code, stably, so the entries of each distinct code (each lattice point,
// numbered in code order) stay in point order, and writes vertex[e] = e's
// lattice point. On a sparse lattice (E <= 2 M, as on a noisy image) the
// points stay in code order, and when every entry was sorted the splat
// lists (CSR: splat_begin [M + 1], splat [E], from the barycentric
// weights [E]) come straight from the sorted entries. A dense lattice (a
// smooth image: tens of entries per point) is renumbered afterwards (see
// the constructor). Returns the points' codes, ascending, with a sentinel
// (2^64 - 1) after the last. An entry e = i (d + 1) + k rides in the low
// bits of its sort item, below the code, when both fit in 64 bits (half
// the bytes for the sort to move: 62 bits on a noisy 256^2 image); else
// in an item of its own.
struct SortedVertices {
  CpuVector<uint64_t> code;
  bool code_order = false;  // sparse: kept in code order
  bool splat_made = false;  // the splat lists too
};
template <typename Item>
SortedVertices sort_vertices_as(const int32_t* keys, int64_t E, int64_t d, const CodeBox& box,
                                int entry_bits, const float* barycentric, CpuVector<int32_t>& vertex,
                                CpuVector<int64_t>& splat_begin, CpuVector<PermutohedralLattice::SplatEntry>& splat) {
  constexpr bool kPacked = std::is_same_v<Item, uint64_t>;
  // (Captured by [=]: the wide items' branches do not use entry_bits.)
  const auto code_of = [=](const Item& item) {
    if constexpr (kPacked) {
      return item >> entry_bits;
    } else {
      return item.code;
    }
  };
  const auto entry_of = [=](const Item& item) {
    if constexpr (kPacked) {
      return static_cast<uint32_t>(item & ((uint64_t(1) << entry_bits) - 1));
    } else {
      return item.entry;
    }
  };
  CpuVector<Item> items(static_cast<size_t>(E)), scratch(static_cast<size_t>(E));
  const uint64_t* weight = box.weight.data();
  const uint64_t origin = box.origin;
  with_fixed_dim(d, [&]<int kD>() {
    const int64_t dd = kD > 0 ? kD : d;
#pragma omp parallel for schedule(static) if (E >= kParallelPoints)
    for (int64_t e = 0; e < E; ++e) {
      const uint64_t code = kernels::lattice_code<kD>(keys + e * dd, d, weight, origin);
      if constexpr (kPacked) {
        items[e] = code << entry_bits | static_cast<uint64_t>(e);
      } else {
        items[e] = {code, static_cast<uint32_t>(e)};
      }
    }
  });
  // On a dense lattice (a smooth image: 12.5k points from 393k entries at
  // 256^2) most entries repeat a code seen a few pixels before. A small
  // direct-mapped cache of recent codes per thread (kCacheSlots, L2-sized)
  // finds most of them: a hit takes the point of the entry it repeats
  // (first_of[e], set after the sort) and stays out of the sort, which
  // then moves a fraction of the items. On a sparse lattice (a noisy
  // image) almost every lookup misses; a thread stops looking after
  // kCacheTrial entries with fewer than half of them hits, and sorts those
  // too. The hits change no result: the points are numbered by code, and a
  // missed repeat is sorted into its group like any other entry.
  constexpr int64_t kCacheSlots = 16384, kCacheTrial = 4096;
  CpuVector<int32_t> first_of(static_cast<size_t>(E));
  int64_t hits = 0;
#pragma omp parallel reduction(+ : hits) if (E >= kParallelPoints)
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = E * t / threads, end = E * (t + 1) / threads;
    struct Slot {
      uint64_t code = ~uint64_t(0);  // no code is 2^64 - 1 (codes < the box size)
      int64_t entry = -1;
    };
    int64_t e = begin;
    if (end - begin >= kCacheTrial) {  // fewer entries: all go to the sort
      std::vector<Slot> cache(static_cast<size_t>(kCacheSlots));
      for (bool looking = true; e < end && looking; ++e) {
        const uint64_t c = code_of(items[e]);
        Slot& slot = cache[mix_hash(c) & (kCacheSlots - 1)];
        const bool hit = slot.code == c;
        first_of[e] = hit ? static_cast<int32_t>(slot.entry) : -1;
        hits += hit;
        if (!hit) slot = {c, e};
        if (e - begin + 1 == kCacheTrial && 2 * hits < kCacheTrial) {
          // Sparse: the trial's few hits go back to the sort too, so that a
          // sparse lattice's sort holds every entry and makes its splat lists.
          std::fill(first_of.begin() + begin, first_of.begin() + e + 1, -1);
          hits = 0;
          looking = false;
        }
      }
    }
    for (; e < end; ++e) first_of[e] = -1;
  }
  if (hits > 0) {
    int64_t kept = 0;
    for (int64_t e = 0; e < E; ++e) {
      items[kept] = items[e];
      kept += first_of[e] < 0;
    }
    items.resize(static_cast<size_t>(kept));
    scratch.resize(static_cast<size_t>(kept));
  }
  radix_sort(items, scratch, box.bits, code_of);
  const int64_t sorted_count = static_cast<int64_t>(items.size());
  SortedVertices sorted{CpuVector<uint64_t>(static_cast<size_t>(sorted_count + 1))};
  CpuVector<uint64_t>& code = sorted.code;
  CpuVector<int64_t> starts(static_cast<size_t>(sorted_count));  // each group's first item
  int64_t M = 0;
  for (int64_t x = 0; x < sorted_count; ++x) {
    const uint64_t c = code_of(items[x]);
    if (x == 0 || c != code[M - 1]) {
      code[M] = c;
      starts[M++] = x;
    }
    vertex[entry_of(items[x])] = static_cast<int32_t>(M - 1);
  }
  code[M] = std::numeric_limits<uint64_t>::max();
  code.resize(static_cast<size_t>(M + 1));
  if (hits > 0) {
#pragma omp parallel for schedule(static) if (E >= kParallelPoints)
    for (int64_t e = 0; e < E; ++e) {
      if (first_of[e] >= 0) vertex[e] = vertex[first_of[e]];
    }
  }
  sorted.code_order = E <= 2 * M;
  // The splat lists, when every entry went through the sort in order.
  sorted.splat_made = sorted.code_order && hits == 0;
  if (sorted.splat_made) {
    splat_begin = CpuVector<int64_t>(static_cast<size_t>(M + 1));  // exactly M + 1: the lattice keeps it
    std::copy_n(starts.begin(), M, splat_begin.begin());
    splat_begin[M] = E;
    splat.resize(static_cast<size_t>(E));
#pragma omp parallel for schedule(static) if (E >= kParallelPoints)
    for (int64_t x = 0; x < E; ++x) {
      const uint32_t e = entry_of(items[x]);
      splat[x] = {static_cast<int32_t>(e / static_cast<uint32_t>(d + 1)), barycentric[e]};
    }
  }
  return sorted;
}
struct WideVertex {
  uint64_t code;
  uint32_t entry;
};
SortedVertices sort_vertices(const int32_t* keys, int64_t E, int64_t d, const CodeBox& box,
                             const float* barycentric, CpuVector<int32_t>& vertex, CpuVector<int64_t>& splat_begin,
                             CpuVector<PermutohedralLattice::SplatEntry>& splat) {
  int entry_bits = 1;
  while ((E - 1) >> entry_bits != 0) ++entry_bits;
  if (box.bits + entry_bits <= 64)
    return sort_vertices_as<uint64_t>(keys, E, d, box, entry_bits, barycentric, vertex, splat_begin, splat);
  return sort_vertices_as<WideVertex>(keys, E, d, box, 0, barycentric, vertex, splat_begin, splat);
}

// up[j M + p] = q for q = p + u_j, or M when absent, from the sorted
// codes: the targets code[p] + step_j ascend with p, so a pointer q walks
// up the codes to meet them. Each step of a walk advances p or q, without
// a branch (which one is a coin toss); a step waits on the last one's
// loads and compare, so kLanes directions walk side by side, each with its
// own p and q, their steps independent. `code` ends in a sentinel above
// every target, so q stops at M. Threads split the points; each direction's
// q starts at the first code not below its first target.
void merge_up_neighbours(const CpuVector<uint64_t>& code, const std::vector<uint64_t>& steps, int32_t* up) {
  const int64_t M = static_cast<int64_t>(code.size()) - 1, d1 = static_cast<int64_t>(steps.size());
  constexpr int kLanes = 8;
#pragma omp parallel if (M >= kParallelPoints)
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = M * t / threads, end = M * (t + 1) / threads;
    for (int64_t j0 = 0; j0 < d1 && begin < end; j0 += kLanes) {
      int64_t p[kLanes], q[kLanes];
      uint64_t step[kLanes];
      int32_t* out[kLanes];
      for (int l = 0; l < kLanes; ++l) {
        const bool used = j0 + l < d1;
        step[l] = used ? steps[j0 + l] : 0;
        out[l] = up + (used ? j0 + l : j0) * M;
        p[l] = used ? begin : end;
        q[l] = std::lower_bound(code.begin(), code.end() - 1, code[begin] + step[l]) - code.begin();
      }
      for (bool walking = true; walking;) {
        walking = false;
        for (int l = 0; l < kLanes; ++l) {
          if (p[l] == end) continue;
          walking = true;
          const uint64_t target = code[p[l]] + step[l], c = code[q[l]];
          out[l][p[l]] = c == target ? static_cast<int32_t>(q[l]) : static_cast<int32_t>(M);
          const bool behind = c < target;
          q[l] += behind;
          p[l] += !behind;
        }
      }
    }
  }
}

}  // namespace

namespace detail {

bool embed_points(const double* features, int64_t N, int64_t d, const double* scale, int32_t* keys,
                  float* barycentric, uint8_t* up_dir) {
  return with_fixed_dim(
      d, [&]<int kD>() { return embed_points_fixed<kD>(features, N, d, scale, keys, barycentric, up_dir); });
}

KeyBounds key_bounds(const int32_t* keys, int64_t count, int64_t d) {
  return with_fixed_dim(d, [&]<int kD>() { return key_bounds_fixed<kD>(keys, count, d); });
}

}  // namespace detail

// The output scale alpha that makes the lattice's kernel carry the
// Gaussian's mass (2 pi)^(d/2), so that on densely sampled features the
// raw filter approximates the exact sum, not only its normalised form.
// Each input point's mass is multiplied by 2^(d+1) by the blur (each of
// the d + 1 passes sums to 2) and spread over lattice cells of volume
// V = covolume(A*_d) / (sqrt(2/3) (d + 1))^d in feature units, where
// covolume(A*_d) = sqrt(d + 1) (d + 1)^(d - 1) (the sum-zero integer
// lattice, covolume sqrt(d + 1), restricted to coordinates congruent
// mod d + 1, index (d + 1)^(d - 1)). So V = (3/2)^(d/2) / sqrt(d + 1) and
//   alpha = (2 pi)^(d/2) / (2^(d+1) V) = sqrt(d + 1) (4 pi / 3)^(d/2) / 2^(d+1).
// (Kraehenbuehl's densecrf uses 1 / (1 + 2^-d), 8-35% lower for d = 1..5;
// the CRF divides by filter(1), where the constant cancels.)
double lattice_slice_scale(int64_t d) {
  const double dd = static_cast<double>(d);
  return std::sqrt(dd + 1.0) * std::pow(4.0 * M_PI / 3.0, dd / 2.0) / std::pow(2.0, dd + 1.0);
}

PermutohedralLattice::PermutohedralLattice(const std::vector<double>& features, int64_t num_points, int64_t dim,
                                           const LatticeOptions& options)
    : num_points_(num_points), dim_(dim) {
  const char* op = "PermutohedralLattice";
  CRFSEG_CHECK(dim >= 1, ValueError, op, ": expected feature dimension d >= 1, got ", dim);
  CRFSEG_CHECK(num_points >= 1, ValueError, op, ": expected at least one point, got ", num_points);
  CRFSEG_CHECK(static_cast<int64_t>(features.size()) == num_points * dim, ValueError, op, ": expected ",
               num_points, " x ", dim, " = ", num_points * dim, " features, got ", features.size());
  CRFSEG_CHECK(num_points * (dim + 1) < std::numeric_limits<int32_t>::max(), ValueError, op, ": ", num_points,
               " points of dimension ", dim, " exceed the 32-bit lattice indices");
  for (double f : features) CRFSEG_CHECK(std::isfinite(f), ValueError, op, ": features must be finite, got ", f);

  const int64_t d = dim, d1 = dim + 1, N = num_points;
  std::vector<double> scale(static_cast<size_t>(d));
  kernels::lattice_embed_scale(d, scale.data());
  const double inv_std = std::sqrt(2.0 / 3.0) * static_cast<double>(d1);  // scale[i] sqrt((i + 1)(i + 2))

  // 1. Embed every point (parallel, independent): keys of its d + 1 vertices.
  // Through the CPU cache (tensor/cpu_allocator.h), like the lattice's own
  // tables: a training step rebuilds them for every image.
  const int64_t E = N * d1;  // vertex entries e = i (d + 1) + k
  CpuVector<int32_t> keys(static_cast<size_t>(E * d));
  CpuVector<uint8_t> up_dir(static_cast<size_t>(E));
  barycentric_.resize(static_cast<size_t>(E));
  const bool in_range =
      detail::embed_points(features.data(), N, d, scale.data(), keys.data(), barycentric_.data(), up_dir.data());
  CRFSEG_CHECK(in_range, ValueError, op, ": features too large for the lattice's 32-bit coordinates (|f| * ",
               inv_std, " must stay below 2^30); are they divided by theta?");
  const KeyBounds bounds = detail::key_bounds(keys.data(), E, d);

  // 2. Find and number the lattice points: the distinct vertex keys.
  // Either way the numbering depends on the keys alone, not on the thread
  // count, so neither does any later sum.
  vertex_.resize(static_cast<size_t>(E));
  const std::optional<CodeBox> box = options.sorted_build ? code_box(bounds, d) : std::nullopt;
  sorted_build_ = box.has_value();
  SortedVertices sorted;           // sorted build: the points' codes, in code order
  std::optional<KeyTable> table;   // hash build: the points in first-seen order
  std::optional<KeyFilter> key_filter;
  CpuVector<uint64_t> hashes;
  if (sorted_build_) {
    sorted = sort_vertices(keys.data(), E, d, *box, barycentric_.data(), vertex_, splat_begin_, splat_);
    num_lattice_ = static_cast<int64_t>(sorted.code.size()) - 1;
  } else {
    // Hash build: insert the keys in entry order, numbering them as first
    // seen (sequential). The table is sized for the most points there can
    // be (E), so it never rehashes (growing a noisy image's table half-way
    // cost 40% of this step). The price is memory while the lattice builds:
    // 16 E bytes of slots, rounded up to a power of two (8 MiB for a 256^2
    // RGB image, 128 MiB at 1024^2). Each new key also goes into the Bloom
    // filter of step 4.
    hashes.resize(static_cast<size_t>(E));
#pragma omp parallel for schedule(static) if (N >= kParallelPoints)
    for (int64_t e = 0; e < E; ++e) hashes[e] = hash_key(keys.data() + e * d, d);
    table.emplace(d, E);
    key_filter.emplace(E);
    // Each insert is a cache miss into a table of several MiB on a sparse
    // lattice; prefetching the slot kAhead vertices early overlaps them.
    constexpr int64_t kAhead = 16;
    for (int64_t e = 0; e < E; ++e) {
      if (e + kAhead < E) table->prefetch(hashes[e + kAhead]);
      bool inserted = false;
      vertex_[e] = table->insert(keys.data() + e * d, hashes[e], &inserted);
      if (inserted) key_filter->add(hashes[e]);
    }
    num_lattice_ = table->size();
  }
  const int64_t M = num_lattice_;

  // 2b. The order of the lattice points, which the filters' speed depends
  // on (the numbering itself changes no sum: the filter's output is bit
  // for bit the same in any). The blur reads each point's neighbours, the
  // slice a pixel's d + 1 vertices, the splat a point's pixels.
  //  - A sparse lattice from the sorted build (a noisy image's: 367k points
  //    from 393k entries) stays in code order: a shift by u_j keeps the
  //    codes' order, so the points p and p + u_j of consecutive blur links
  //    are two ascending streams, and its filters ran as fast as in Z order
  //    (bench/NOTES.md change 26).
  //  - Otherwise the points go in first-seen order, the hash build's own
  //    (the sorted build's dense lattices are renumbered so: on a smooth
  //    image consecutive pixels share vertices, which code order scatters:
  //    its filters ran 10-50% slower at 512^2 and 1024^2). Lattices of
  //    kReorderPoints or more are then renumbered along a Z-order (Morton)
  //    curve of their keys: in first-seen order a point's blur neighbours
  //    lie anywhere in tables of several MiB; along the curve most lie near.
  //    So for these the sorted build makes the hash build's very lattice.
  // rank[old index] = new index; empty: kept. The hash table keeps the old
  // numbers (renaming its slots and moving its keys cost 7.5 ms at 367k
  // points): the neighbour search below walks the points in the new order,
  // reads their keys through the inverse permutation, and renames what the
  // table returns.
  const bool code_order = sorted_build_ && sorted.code_order;
  CpuVector<int32_t> seen_rank, first_entry;  // sorted build, dense: code order -> first seen; a point's first entry
  if (sorted_build_ && !code_order) {
    seen_rank.assign(static_cast<size_t>(M), -1);
    first_entry.resize(static_cast<size_t>(M));
    int32_t next = 0;
    for (int64_t e = 0; e < E; ++e) {
      int32_t& r = seen_rank[vertex_[e]];
      if (r < 0) {
        first_entry[next] = static_cast<int32_t>(e);
        r = next++;
      }
      vertex_[e] = r;
    }
  }
  const auto first_seen_key = [&](int64_t p) {
    return sorted_build_ ? keys.data() + static_cast<int64_t>(first_entry[p]) * d : table->key(p);
  };
  const ZOrder z = !code_order && options.z_order && M >= kReorderPoints
                       ? z_order_rank(M, d, bounds, first_seen_key)
                       : ZOrder{};
  if (!z.rank.empty()) {
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < E; ++e) vertex_[e] = z.rank[vertex_[e]];
  }
  const int32_t* renamed = z.rank.empty() ? nullptr : z.rank.data();
  const int32_t* old_of = z.rank.empty() ? nullptr : z.old_index.data();
  const auto new_index = [renamed](int64_t old) { return renamed ? renamed[old] : static_cast<int32_t>(old); };
  // Sorted build, dense: each code-order point's final index, for the merge.
  if (!seen_rank.empty()) {
    for (int64_t g = 0; g < M; ++g) seen_rank[g] = new_index(seen_rank[g]);
  }

  // 3. The splat lists, the transpose of (vertex_, barycentric_) in CSR
  // form, filled in point order so each list is sorted by point. `entries`
  // keeps the vertex entries e = i (d + 1) + k themselves, for step 4 of
  // the hash build. (The sorted build may have made them in step 2.)
  CpuVector<int32_t> entries;
  if (!(sorted_build_ && sorted.splat_made)) {
    splat_begin_.assign(static_cast<size_t>(M + 1), 0);
    for (int64_t e = 0; e < E; ++e) ++splat_begin_[vertex_[e] + 1];
    for (int64_t p = 0; p < M; ++p) splat_begin_[p + 1] += splat_begin_[p];
    entries.resize(static_cast<size_t>(E));
    {
      CpuVector<int64_t> fill(splat_begin_.begin(), splat_begin_.end() - 1);
      for (int64_t e = 0; e < E; ++e) entries[fill[vertex_[e]]++] = static_cast<int32_t>(e);
    }
    splat_.resize(static_cast<size_t>(E));
#pragma omp parallel for schedule(static) if (N >= kParallelPoints)
    for (int64_t x = 0; x < E; ++x) splat_[x] = {static_cast<int32_t>(entries[x] / d1), barycentric_[entries[x]]};
  }

  // 4. Blur neighbours p + u_j, u_j = (d + 1) e_j - (1, ..., 1): in the d
  // stored coordinates every coordinate moves by -1 and coordinate j (when
  // j < d) by +d. Only these "up" neighbours are stored (up_, absent ones
  // as M): p - u_j is the point whose up neighbour is p, so the chains, and
  // blur_neighbours() for the plain blur and the CUDA lattice, recover the
  // "down" side from up_ without a hash lookup. Each thread writes only the
  // up entries of its own points.
  //
  // The sorted build merges the sorted codes (merge_up_neighbours). The
  // hash build searches. First, on sparse lattices, the links inside each
  // pixel's simplex (a cycle of d + 1 links, see kernels::lattice_embed_point) are written
  // straight from the splat lists; on a noisy 256^2 image they are 390k of
  // the 520k links, and their candidates are not searched. The search for
  // the rest screens (the default): a candidate's hash is
  // mix(poly(key) + poly(step_j)) (poly is linear, see hash_key), and the
  // Bloom filter of step 2 drops most absent candidates before they touch
  // the table; the candidate's key is written out only for those it lets
  // through. options.plain_neighbour_search hashes and probes every
  // candidate instead: the same table, the reference for tests. With the
  // blocks below, this step went from 55 to 19 ms on one thread for a
  // noisy 256^2 image (bench/NOTES.md change 15).
  if (sorted_build_) {
    up_.resize(static_cast<size_t>(d1 * M));
    if (seen_rank.empty()) {
      merge_up_neighbours(sorted.code, box->step, up_.data());
    } else {
      // Merged in code order (sequential writes), then renamed.
      CpuVector<int32_t> merged(static_cast<size_t>(d1 * M));
      merge_up_neighbours(sorted.code, box->step, merged.data());
      const int32_t* rank = seen_rank.data();
#pragma omp parallel for collapse(2) schedule(static) if (M >= kParallelPoints)
      for (int64_t j = 0; j < d1; ++j) {
        for (int64_t p = 0; p < M; ++p) {
          const int32_t q = merged[j * M + p];
          up_[j * M + rank[p]] = q == M ? q : rank[q];
        }
      }
    }
  } else {
    const bool plain = options.plain_neighbour_search;
    // The links come from every vertex entry, the search from every lattice
    // point: worth it on sparse lattices only (a smooth image's lattice, or
    // the spatial one, has tens of entries per point). up_dir holds bytes.
    const bool simplex_links = !plain && d1 <= 255 && N * d1 <= 2 * M;
    std::vector<uint64_t> step_poly(static_cast<size_t>(d1));
    {
      std::vector<int32_t> step(static_cast<size_t>(d));
      for (int64_t j = 0; j < d1; ++j) {
        for (int64_t k = 0; k < d; ++k) step[k] = k == j ? static_cast<int32_t>(d) : -1;
        step_poly[j] = key_poly(step.data(), d);
      }
    }
    up_.assign(static_cast<size_t>(d1 * M), static_cast<int32_t>(M));
  #pragma omp parallel if (M >= kParallelPoints)
    {
      const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
      const int64_t begin = M * t / threads, end = M * (t + 1) / threads;
      // The up-neighbour key p + u_j of the point with stored coordinates `key`.
      std::vector<int32_t> up(static_cast<size_t>(d));
      const auto up_key = [&](const int32_t* key, int64_t j) {
        for (int64_t k = 0; k < d; ++k) up[k] = key[k] - 1;
        if (j < d) up[j] = key[j] + static_cast<int32_t>(d);
        return up.data();
      };
      // Points go in blocks of kBlock, each in three passes, so that every
      // pass is a simple loop: (a) hash all (d + 1) kBlock candidates,
      // direction-major, so the mixing is one vectorisable loop over
      // independent lanes; (b) screen them and compact the survivors without a
      // branch (every candidate is written, the count advances only for those
      // that pass: which pass is a coin toss, a branch would mispredict) and
      // prefetch their slots; (c) probe the survivors, whose slots are by then
      // on their way. The order of the probes changes no entry of the table.
      // Points go in new (Z) order; their keys, in the table's old order, are
      // gathered into `block_keys` first (prefetched a block ahead).
      constexpr int64_t kBlock = 256;
      std::vector<uint64_t> poly(static_cast<size_t>(kBlock)), hash(static_cast<size_t>(kBlock * d1));
      std::vector<uint64_t> cand_hash(hash.size());
      std::vector<int32_t> cand_point(hash.size()), cand_dir(hash.size()), block_keys(static_cast<size_t>(kBlock * d));
      std::vector<uint8_t> known(hash.size());  // [j kBlock + i]: link p + u_j already written
      const auto old_index = [old_of](int64_t p) { return old_of ? old_of[p] : p; };
      for (int64_t first = begin; first < end; first += kBlock) {
        const int64_t count = std::min(kBlock, end - first);
        for (int64_t i = 0; i < count; ++i) std::copy_n(table->key(old_index(first + i)), d, block_keys.data() + i * d);
        for (int64_t i = first + kBlock; old_of && i < std::min(end, first + 2 * kBlock); ++i)
          __builtin_prefetch(table->key(old_of[i]));
        const auto key_of = [&](int64_t i) { return block_keys.data() + i * d; };  // i: index in the block
        // The simplex links: entry e = i' (d + 1) + k at lattice point p has
        // its up neighbour along u_{up_dir[e]} at vertex (k - 1) mod (d + 1)
        // of the same pixel i'.
        std::fill(known.begin(), known.end(), uint8_t(0));
        for (int64_t i = 0; simplex_links && i < count; ++i) {
          const int32_t p = static_cast<int32_t>(first + i);
          for (int64_t x = splat_begin_[p]; x < splat_begin_[p + 1]; ++x) {
            const int64_t e = entries[x], k = e % d1, j = up_dir[e];
            const int32_t q = vertex_[e - k + (k + d) % d1];
            up_[j * M + p] = q;
            known[j * kBlock + i] = 1;
          }
        }
        if (plain) {
          for (int64_t j = 0; j < d1; ++j)
            for (int64_t i = 0; i < count; ++i) hash[j * kBlock + i] = hash_key(up_key(key_of(i), j), d);
        } else {
          for (int64_t i = 0; i < count; ++i) poly[i] = key_poly(key_of(i), d);
          for (int64_t j = 0; j < d1; ++j) {
            const uint64_t step = step_poly[j];
            uint64_t* h = hash.data() + j * kBlock;
            for (int64_t i = 0; i < count; ++i) h[i] = mix_hash(poly[i] + step);
          }
        }
        int64_t n = 0;
        for (int64_t j = 0; j < d1; ++j) {
          for (int64_t i = 0; i < count; ++i) {
            const uint64_t h = hash[j * kBlock + i];
            cand_hash[n] = h;
            cand_point[n] = static_cast<int32_t>(i);
            cand_dir[n] = static_cast<int32_t>(j);
            n += !known[j * kBlock + i] && (plain || key_filter->may_contain(h));
          }
        }
        for (int64_t c = 0; c < n; ++c) table->prefetch(cand_hash[c]);
        for (int64_t c = 0; c < n; ++c) {
          const int64_t i = cand_point[c], j = cand_dir[c];
          const int32_t q_old = table->find(up_key(key_of(i), j), cand_hash[c]);
          if (q_old < 0) continue;
          up_[j * M + first + i] = new_index(q_old);
        }
      }
    }
  }

  chain_blur_ = options.chain_blur;
  cpu_blur_ = options.cpu_blur;
  if (!cpu_blur_) return;
  if (chain_blur_) {
    build_chains();
  } else {
    neighbour_ = blur_neighbours();
  }
}

CpuVector<int32_t> PermutohedralLattice::blur_neighbours() const {
  const int64_t M = num_lattice_, d1 = dim_ + 1;
  CpuVector<int32_t> table(static_cast<size_t>(d1 * M * 2));
  write_blur_neighbours(table.data(), M, 0, static_cast<int32_t>(M));
  return table;
}

// Every down slot is first set absent, then p's up neighbour q gets p as its
// down neighbour (each point is at most one point's up neighbour in a
// direction, so no slot is written twice).
void PermutohedralLattice::write_blur_neighbours(int32_t* out, int64_t row_stride, int32_t offset,
                                                 int32_t absent) const {
  const int64_t M = num_lattice_, d1 = dim_ + 1;
  CRFSEG_CHECK(row_stride >= M, ValueError, "PermutohedralLattice::write_blur_neighbours: expected a row stride >= ",
               M, ", got ", row_stride);
#pragma omp parallel for schedule(static) if (M >= kParallelPoints)
  for (int64_t j = 0; j < d1; ++j) {
    const int32_t* up = up_.data() + j * M;
    int32_t* nb = out + j * row_stride * 2;
    for (int64_t p = 0; p < M; ++p) nb[2 * p + 1] = absent;
    for (int64_t p = 0; p < M; ++p) {
      const int32_t q = up[p];
      nb[2 * p] = q == M ? absent : q + offset;
      if (q != M) nb[2 * static_cast<int64_t>(q) + 1] = static_cast<int32_t>(p) + offset;
    }
  }
}

// The blur chains of every direction, from the up neighbours: a chain
// starts at each point with an up neighbour that is no point's up
// neighbour itself, and follows the up neighbours until one is absent
// (coordinates move monotonically along u_j, so every walk ends). Chains
// are numbered in the order of their first point. Directions are
// independent: one per thread. Which points have a down neighbour is
// marked first, a byte per point (plain stores: a bitmap's read-modify-
// writes wait on each other), where the full neighbour table of a noisy
// 256^2 image would be 17.6 MB.
// A walk reads an up entry far away for each point after its first
// (a cache miss on a large lattice): the chain heads are collected in
// blocks first (no branch: which points start a chain is a coin toss on a
// noisy image) and those entries prefetched before the walks.
// Chains of two points (on a noisy 256^2 image, 405k of the 456k) go to a
// list of their own, which the blur walks without a branch on the length.
// Each direction fills a region of its own, sized for the most it can
// hold (every point on at most one chain; every chain at least 2 points),
// and the regions are then packed together.
void PermutohedralLattice::build_chains() {
  const int64_t M = num_lattice_, d1 = dim_ + 1, max_chains = M / 2 + 1;
  CpuVector<int32_t> region_points(static_cast<size_t>(d1 * M)), region_starts(static_cast<size_t>(d1 * max_chains));
  CpuVector<int32_t> region_pairs(static_cast<size_t>(d1 * max_chains * 2));
  std::vector<int64_t> chains(static_cast<size_t>(d1)), points(static_cast<size_t>(d1)), pairs(static_cast<size_t>(d1));
#pragma omp parallel for schedule(static) if (M >= kParallelPoints)
  for (int64_t j = 0; j < d1; ++j) {
    const int32_t* up = up_.data() + j * M;
    CpuVector<uint8_t> has_down(static_cast<size_t>(M + 1));  // entry M: "absent" lands there
    std::fill(has_down.begin(), has_down.end(), uint8_t(0));
    for (int64_t p = 0; p < M; ++p) has_down[up[p]] = 1;
    const auto starts_chain = [&](int64_t p) { return (up[p] != M) & (has_down[p] == 0); };
    int32_t* pts = region_points.data() + j * M;
    int32_t* starts = region_starts.data() + j * max_chains;
    int32_t* two = region_pairs.data() + j * max_chains * 2;
    int64_t c = 0, k = 0, np = 0;
    constexpr int64_t kBlock = 256;
    int32_t head[kBlock];
    for (int64_t first = 0; first < M; first += kBlock) {
      const int64_t count = std::min(kBlock, M - first);
      int64_t heads = 0;
      for (int64_t p = first; p < first + count; ++p) {
        head[heads] = static_cast<int32_t>(p);
        heads += starts_chain(p);
      }
      for (int64_t h = 0; h < heads; ++h) __builtin_prefetch(up + up[head[h]]);
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t start = k;
        for (int64_t q = head[h]; q != M; q = up[q]) pts[k++] = static_cast<int32_t>(q);
        if (k - start == 2) {
          two[2 * np] = pts[start];
          two[2 * np++ + 1] = pts[start + 1];
          k = start;
        } else {
          starts[c++] = static_cast<int32_t>(start);
        }
      }
    }
    chains[j] = c;
    points[j] = k;
    pairs[j] = np;
  }
  pair_begin_.assign(static_cast<size_t>(d1 + 1), 0);
  for (int64_t j = 0; j < d1; ++j) pair_begin_[j + 1] = pair_begin_[j] + pairs[j];
  pair_.resize(static_cast<size_t>(2 * pair_begin_[d1]));
  chain_begin_.assign(static_cast<size_t>(d1 + 1), 0);
  std::vector<int64_t> point_begin(static_cast<size_t>(d1 + 1), 0);
  for (int64_t j = 0; j < d1; ++j) {
    chain_begin_[j + 1] = chain_begin_[j] + chains[j];
    point_begin[j + 1] = point_begin[j] + points[j];
  }
  chain_start_.resize(static_cast<size_t>(chain_begin_[d1] + 1));
  chain_point_.resize(static_cast<size_t>(point_begin[d1]));
  chain_start_[chain_begin_[d1]] = point_begin[d1];
#pragma omp parallel for schedule(static) if (M >= kParallelPoints)
  for (int64_t j = 0; j < d1; ++j) {
    std::copy_n(region_points.data() + j * M, points[j], chain_point_.data() + point_begin[j]);
    std::copy_n(region_pairs.data() + j * max_chains * 2, 2 * pairs[j], pair_.data() + 2 * pair_begin_[j]);
    const int32_t* starts = region_starts.data() + j * max_chains;
    for (int64_t c = 0; c < chains[j]; ++c) chain_start_[chain_begin_[j] + c] = point_begin[j] + starts[c];
  }
}

namespace {

// v[p] += (v[p + u_j] + v[p - u_j]) / 2 along one chain of `count` points
// (old values on the right; the ends' outer neighbours are absent, 0), for
// channels ch0 .. ch0 + kW - 1 of rows of C. The previous point's old value
// and the next's stay in registers, so each point is read and written once.
template <int kW, typename T>
void blur_chain(T* values, const int32_t* chain, int64_t count, int64_t C, int64_t ch0) {
  T prev[kW], cur[kW], next[kW];
  const T* first = values + static_cast<int64_t>(chain[0]) * C + ch0;
  for (int w = 0; w < kW; ++w) prev[w] = T(0), cur[w] = first[w];
  for (int64_t i = 0; i < count; ++i) {
    if (i + 1 < count) {
      const T* n = values + static_cast<int64_t>(chain[i + 1]) * C + ch0;
      for (int w = 0; w < kW; ++w) next[w] = n[w];
    } else {
      for (int w = 0; w < kW; ++w) next[w] = T(0);
    }
    T* o = values + static_cast<int64_t>(chain[i]) * C + ch0;
    for (int w = 0; w < kW; ++w) {
      o[w] = cur[w] + T(0.5) * (next[w] + prev[w]);
      prev[w] = cur[w];
      cur[w] = next[w];
    }
  }
}

// blur_chain for a chain of two points a, b: the same sums, no branch.
template <int kW, typename T>
void blur_pair(T* values, int64_t a, int64_t b, int64_t C, int64_t ch0) {
  T* va = values + a * C + ch0;
  T* vb = values + b * C + ch0;
  for (int w = 0; w < kW; ++w) {
    const T x = va[w], y = vb[w];
    va[w] = x + T(0.5) * (y + T(0));
    vb[w] = y + T(0.5) * (T(0) + x);
  }
}

// Per calling thread, per element type: the two (M + 1) x C value buffers
// of filter(). Reused across calls and lattices (grown, never shrunk), so
// filtering allocates nothing in steady state, and filters stay const and
// safe to call from several threads at once (OpenMP workers only write
// through the caller's buffers).
template <typename T>
std::vector<T>& lattice_buffer(int which) {
  thread_local std::vector<T> buffers[2];
  return buffers[which];
}

}  // namespace

// kC > 0 fixes the channel count at compile time (the CRF filters L - 1
// of its classes, with the all-ones normaliser in the first call: 1..4
// channels up to 5 classes), so the per-row loops unroll; kC = 0 reads `channels`.
template <typename T, int kC>
void PermutohedralLattice::filter(const T* in, T* out, int64_t channels, bool transpose) const {
  const int64_t C = kC > 0 ? kC : channels;
  const int64_t M = num_lattice_, N = num_points_, d = dim_, d1 = dim_ + 1;
  // The plain blur needs a second buffer; the chain blur works in place.
  std::vector<T>& values_buf = lattice_buffer<T>(0);
  std::vector<T>& scratch_buf = lattice_buffer<T>(1);
  const size_t rows = static_cast<size_t>((M + 1) * C);
  if (values_buf.size() < rows) values_buf.resize(rows);
  if (!chain_blur_ && scratch_buf.size() < rows) scratch_buf.resize(rows);
  T* values = values_buf.data();
  T* scratch = scratch_buf.data();
  // Row M of both buffers is the plain blur's "absent neighbour", always zero.
  std::fill(values + M * C, values + (M + 1) * C, T(0));
  if (!chain_blur_) std::fill(scratch + M * C, scratch + (M + 1) * C, T(0));
  const bool parallel = (M + N) * C > 8192;

  // Splat: a gather per lattice point over its sorted (point, weight) list.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t p = 0; p < M; ++p) {
    T* v = values + p * C;
    for (int64_t c = 0; c < C; ++c) v[c] = T(0);
    for (int64_t e = splat_begin_[p]; e < splat_begin_[p + 1]; ++e) {
      const T w = static_cast<T>(splat_[e].weight);
      const T* x = in + static_cast<int64_t>(splat_[e].point) * C;
      for (int64_t c = 0; c < C; ++c) v[c] += w * x[c];
    }
  }

  // Blur along the d + 1 directions ([1 2 1] / 4 times 2 each), in reverse order for the adjoint.
#pragma omp parallel if (parallel && chain_blur_)
  for (int64_t step = 0; chain_blur_ && step < d1; ++step) {
    const int64_t j = transpose ? d - step : step;
    // Pairs and longer chains hold disjoint points: no barrier between them.
#pragma omp for schedule(static) nowait
    for (int64_t x = pair_begin_[j]; x < pair_begin_[j + 1]; ++x) {
      const int64_t a = pair_[2 * x], b = pair_[2 * x + 1];
      if constexpr (kC > 0) {
        blur_pair<kC>(values, a, b, C, 0);
      } else {
        for (int64_t ch = 0; ch < C; ++ch) blur_pair<1>(values, a, b, C, ch);
      }
    }
#pragma omp for schedule(static)
    for (int64_t c = chain_begin_[j]; c < chain_begin_[j + 1]; ++c) {
      const int32_t* chain = chain_point_.data() + chain_start_[c];
      const int64_t count = chain_start_[c + 1] - chain_start_[c];
      if constexpr (kC > 0) {
        blur_chain<kC>(values, chain, count, C, 0);
      } else {
        for (int64_t ch = 0; ch < C; ++ch) blur_chain<1>(values, chain, count, C, ch);
      }
    }
  }
  for (int64_t step = 0; !chain_blur_ && step < d1; ++step) {
    const int64_t j = transpose ? d - step : step;
    const int32_t* nb = neighbour_.data() + j * M * 2;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t p = 0; p < M; ++p) {
      const T* v = values + p * C;
      const T* a = values + static_cast<int64_t>(nb[2 * p]) * C;
      const T* b = values + static_cast<int64_t>(nb[2 * p + 1]) * C;
      T* o = scratch + p * C;
      for (int64_t c = 0; c < C; ++c) o[c] = v[c] + T(0.5) * (a[c] + b[c]);
    }
    std::swap(values, scratch);
  }

  // Slice: a gather per point over its simplex, times alpha (see lattice_slice_scale).
  const T alpha = static_cast<T>(lattice_slice_scale(d));
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < N; ++i) {
    T acc[kC > 0 ? kC : 1];
    T* o = kC > 0 ? acc : out + i * C;
    for (int64_t c = 0; c < C; ++c) o[c] = T(0);
    for (int64_t k = 0; k < d1; ++k) {
      const T w = static_cast<T>(barycentric_[i * d1 + k]);
      const T* v = values + static_cast<int64_t>(vertex_[i * d1 + k]) * C;
      for (int64_t c = 0; c < C; ++c) o[c] += w * v[c];
    }
    for (int64_t c = 0; c < C; ++c) out[i * C + c] = alpha * o[c];
  }
}

template <typename T>
void PermutohedralLattice::dispatch_filter(const T* in, T* out, int64_t channels, bool transpose) const {
  switch (channels) {
    case 1: return filter<T, 1>(in, out, channels, transpose);
    case 2: return filter<T, 2>(in, out, channels, transpose);
    case 3: return filter<T, 3>(in, out, channels, transpose);
    case 4: return filter<T, 4>(in, out, channels, transpose);
    default: return filter<T, 0>(in, out, channels, transpose);
  }
}

double PermutohedralLattice::slice_scale() const { return lattice_slice_scale(dim_); }

void PermutohedralLattice::apply(const float* in, float* out, int64_t channels, bool transpose) const {
  check_cpu_blur();
  dispatch_filter(in, out, channels, transpose);
}

void PermutohedralLattice::apply(const double* in, double* out, int64_t channels, bool transpose) const {
  check_cpu_blur();
  dispatch_filter(in, out, channels, transpose);
}

void PermutohedralLattice::check_cpu_blur() const {
  CRFSEG_CHECK(cpu_blur_, ValueError, "PermutohedralLattice::apply: this lattice was built without the CPU blur's "
               "structures (LatticeOptions::cpu_blur = false, for the GPU's tables only)");
}

}  // namespace crfseg::crf
