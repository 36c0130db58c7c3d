// The index math of the CUDA elementwise kernels (kernels/cuda/geometry.h)
// runs on the host too, so it is tested here without a GPU: for broadcast,
// permuted and sliced views, thread i's operand offsets must be those of the
// i-th element in row-major order of the output.
#include "kernels/cuda/geometry.h"
#include "tests/support/helpers.h"

using namespace crfseg;
using namespace crfseg::test;
namespace kcu = crfseg::kernels::cuda;

namespace {

// Element offset of `idx` (an output multi-index) in an operand with the
// given strides, the slow and obvious way.
int64_t direct_offset(const std::vector<int64_t>& idx, const Strides& strides) {
  int64_t off = 0;
  for (size_t d = 0; d < idx.size(); ++d) off += idx[d] * strides[d];
  return off;
}

void check_geometry(const Shape& shape, const Strides& s0, const Strides& s1, const Strides& s2) {
  const kcu::Geometry g = kcu::make_geometry<3>("test", shape, {s0.data(), s1.data(), s2.data()});
  REQUIRE(g.numel == numel(shape));
  int64_t i = 0;
  for_each_index(shape, [&](const std::vector<int64_t>& idx) {
    CHECK(g.offset(0, i) == direct_offset(idx, s0));
    CHECK(g.offset(1, i) == direct_offset(idx, s1));
    CHECK(g.offset(2, i) == direct_offset(idx, s2));
    ++i;
  });
}

}  // namespace

TEST_CASE("cuda geometry: contiguous tensors coalesce to one dim") {
  const Shape shape = {3, 5, 7};
  const Strides s = contiguous_strides(shape);
  const kcu::Geometry g = kcu::make_geometry<2>("test", shape, {s.data(), s.data()});
  CHECK(g.ndim == 1);
  CHECK(g.sizes[0] == 105);
  check_geometry(shape, s, s, s);
}

TEST_CASE("cuda geometry: broadcast, permuted and sliced operands") {
  const Shape shape = {4, 1, 6, 5};
  const Strides out = contiguous_strides(shape);
  const Strides bcast = {0, 0, 5, 1};                  // [6, 5] broadcast over the leading dims
  const Strides permuted = {1, 0, 20, 4};              // a [6, 5, 4] tensor permuted to [4, ., 6, 5]
  const Strides sliced = {2 * 6 * 11, 0, 11 * 2, 2};   // every other element of a bigger tensor
  check_geometry(shape, out, bcast, permuted);
  check_geometry(shape, sliced, permuted, bcast);
  check_geometry({1, 1, 1}, {0, 0, 0}, {0, 0, 0}, {1, 1, 1});  // one element
  check_geometry({2, 3, 2, 3, 2, 3, 2, 3}, contiguous_strides({2, 3, 2, 3, 2, 3, 2, 3}),
                 {0, 1, 0, 3, 0, 9, 0, 27}, {1296, 432, 216, 72, 36, 12, 6, 2});  // 8 dims
}

// Past 2^32 elements (or with a dim that large) offset() divides in 64
// bits; below, in 32. Checked at elements around the 2^32 boundaries
// without enumerating them: the geometry is index math only, no memory.
TEST_CASE("cuda geometry: offsets past 32-bit element counts") {
  const int64_t big = (int64_t{1} << 32) + 7;  // a dim longer than 32 bits
  const Shape shape = {3, 5, big};
  const Strides out = contiguous_strides(shape);
  const Strides sliced = {5 * big * 2 + 11, big * 2, 2};  // every other element of padded rows: no merging
  const Strides bcast = {0, 1, 0};
  const kcu::Geometry g = kcu::make_geometry<3>("test", shape, {out.data(), sliced.data(), bcast.data()});
  REQUIRE(g.ndim == 3);
  for (const int64_t i0 : {int64_t{0}, int64_t{2}}) {
    for (const int64_t i1 : {int64_t{0}, int64_t{4}}) {
      for (const int64_t i2 : {int64_t{0}, int64_t{1}, (int64_t{1} << 32) - 1, int64_t{1} << 32, big - 1}) {
        const std::vector<int64_t> idx = {i0, i1, i2};
        const int64_t i = (i0 * 5 + i1) * big + i2;
        INFO("element ", i);
        CHECK(g.offset(0, i) == direct_offset(idx, out));
        CHECK(g.offset(1, i) == direct_offset(idx, sliced));
        CHECK(g.offset(2, i) == direct_offset(idx, bcast));
      }
    }
  }
  // Short dims, with the flat index itself past 2^32.
  const Shape wide = {int64_t{1} << 22, 3, 1031};
  const Strides w_out = contiguous_strides(wide), w_perm = {1, int64_t{1} << 22, 3 * (int64_t{1} << 22)};
  const kcu::Geometry gw = kcu::make_geometry<2>("test", wide, {w_out.data(), w_perm.data()});
  for (const int64_t r : {int64_t{0}, (int64_t{1} << 22) - 1, int64_t{1} << 21}) {
    for (const int64_t c : {int64_t{0}, int64_t{2}}) {
      for (const int64_t e : {int64_t{0}, int64_t{1030}}) {
        const int64_t i = (r * 3 + c) * 1031 + e;
        INFO("element ", i);
        CHECK(gw.offset(0, i) == direct_offset({r, c, e}, w_out));
        CHECK(gw.offset(1, i) == direct_offset({r, c, e}, w_perm));
      }
    }
  }
  CHECK(kernels::quotient((int64_t{1} << 32) - 1, 3) == ((int64_t{1} << 32) - 1) / 3);
  CHECK(kernels::quotient(int64_t{1} << 40, (int64_t{1} << 32) + 1) == (int64_t{1} << 40) / ((int64_t{1} << 32) + 1));
}

// The maps take four elements per thread only where every four consecutive
// output elements lie in one row and each operand holds them contiguously
// at a 4-element-aligned address, or as one broadcast value.
TEST_CASE("cuda geometry: when the maps may take four elements at a time") {
  alignas(64) static float storage[64];
  const Shape shape = {3, 8};
  const Strides out = contiguous_strides(shape), bcast_row = {1, 0}, bcast_col = {0, 1};
  const Strides padded = {12, 1}, odd_rows = {9, 1}, permuted = {1, 3};
  auto geometry = [&](const Strides& a, const Strides& b) {
    return kcu::make_geometry<3>("test", shape, {out.data(), a.data(), b.data()});
  };
  const kcu::Geometry g = geometry(padded, bcast_row);
  CHECK(g.ndim == 2);
  CHECK(kcu::quad_shape(g));
  CHECK(kcu::quad_operand(g, 0, storage, sizeof(float)));
  CHECK(kcu::quad_operand(g, 1, storage + 4, sizeof(float)));   // padded rows of 12, aligned base
  CHECK_FALSE(kcu::quad_operand(g, 1, storage + 2, sizeof(float)));  // base off 16 bytes
  CHECK(kcu::quad_operand(g, 1, storage + 2, sizeof(uint16_t)));     // 8-byte alignment is enough for 2-byte values
  CHECK(kcu::quad_operand(g, 2, storage + 1, sizeof(float)));   // one value per row, any address
  CHECK(kcu::inner_step(g, 1) == 1);
  CHECK(kcu::inner_step(g, 2) == 0);
  const kcu::Geometry odd = geometry(odd_rows, bcast_col);
  CHECK_FALSE(kcu::quad_operand(odd, 1, storage, sizeof(float)));  // rows 9 apart: the next row's four are not aligned
  CHECK(kcu::quad_operand(odd, 2, storage, sizeof(float)));        // the same 8 values for every row
  CHECK_FALSE(kcu::quad_operand(geometry(permuted, out), 1, storage, sizeof(float)));  // stride 3 along the row
  // Rows of 6: four consecutive elements would straddle two rows.
  const Shape six = {4, 6};
  const Strides s6 = {8, 1};  // padded: the rows do not merge
  CHECK_FALSE(kcu::quad_shape(kcu::make_geometry<2>("test", six, {s6.data(), s6.data()})));
  // A contiguous tensor merges to one dim of 24: four at a time throughout.
  const Strides c6 = contiguous_strides(six);
  CHECK(kcu::quad_shape(kcu::make_geometry<2>("test", six, {c6.data(), c6.data()})));
}

TEST_CASE("cuda geometry: empty tensors and too many dims") {
  const Shape empty_shape = {3, 0, 2};
  const Strides s = contiguous_strides(empty_shape);
  CHECK(kcu::make_geometry<1>("test", empty_shape, {s.data()}).numel == 0);
  // Nine dims that cannot merge (alternating broadcast) exceed the kernels' limit.
  const Shape nine = {2, 2, 2, 2, 2, 2, 2, 2, 2};
  const Strides a = contiguous_strides(nine);
  const Strides b = {0, 1, 0, 1, 0, 1, 0, 1, 0};
  check_throws_with<NotImplementedError>([&] { kcu::make_geometry<2>("add", nine, {a.data(), b.data()}); },
                                         "add: CUDA elementwise kernels take at most 8");
}
