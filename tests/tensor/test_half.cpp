// bfloat16 and float16 (tensor/half.h): the conversions against independent
// references over every 16-bit pattern and over float inputs chosen to hit
// every rounding case, then the tensor operations that take them (fill,
// copy and cast, compare, where, safetensors) and the ones that refuse them.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <vector>

#include "layers/linear.h"
#include "tensor/factory.h"
#include "tensor/half.h"
#include "tensor/ops.h"
#include "tensor/safetensors.h"
#include "tests/support/helpers.h"
#include "tests/support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::test;

namespace {

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// A 16-bit pattern's value from its fields with ldexp, independently of
// tensor/half.h (infinity and NaN as such): `exponent_bits` wide exponent,
// the rest fraction.
double decode(uint16_t h, int exponent_bits) {
  const int fraction_bits = 15 - exponent_bits, bias = (1 << (exponent_bits - 1)) - 1;
  const int e = (h >> fraction_bits) & ((1 << exponent_bits) - 1);
  const int m = h & ((1 << fraction_bits) - 1);
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == (1 << exponent_bits) - 1) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(m, 1 - bias - fraction_bits);
  return sign * std::ldexp(m + (1 << fraction_bits), e - bias - fraction_bits);
}

// Checks that `got` is f rounded to nearest, ties to even: among the two
// patterns of the same sign whose values bracket |f| (the largest finite
// one's successor counted as 2^(emax + 1), as IEEE rounding does), the
// nearer, and on a tie the one with an even last bit.
void check_rounding(float f, uint16_t got, int exponent_bits, const char* what) {
  if (std::isnan(f)) {
    CHECK(std::isnan(decode(got, exponent_bits)));
    return;
  }
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(f));
  const uint16_t inf = static_cast<uint16_t>(((1 << exponent_bits) - 1) << (15 - exponent_bits));
  // The largest pattern whose value is <= a (values grow with the pattern).
  uint16_t lo = 0;
  for (int step = 1 << 14; step > 0; step >>= 1) {
    if (lo + step <= inf && decode(static_cast<uint16_t>(lo + step), exponent_bits) <= a) lo += step;
  }
  uint16_t want = lo;
  if (lo != inf && decode(lo, exponent_bits) != a) {
    const uint16_t hi = static_cast<uint16_t>(lo + 1);
    const double vhi = hi == inf ? std::ldexp(1.0, (1 << (exponent_bits - 1))) : decode(hi, exponent_bits);
    const double dlo = a - decode(lo, exponent_bits), dhi = vhi - a;
    want = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1) ? hi : lo);
  }
  want = static_cast<uint16_t>(want | sign);
  // (doctest formats each INFO argument on a stream of its own, so the hex
  // digits are made here.)
  std::ostringstream bits;
  bits << std::hex << "bits 0x" << bits_of(f) << ", got 0x" << got << ", want 0x" << want;
  INFO(std::string(what), ": f = ", f, " (", bits.str(), ")");
  CHECK(got == want);
}

// Floats near every interesting boundary of a 16-bit format with
// `fraction_bits`: each pattern's exact value, the midpoints to its
// neighbours and one float ulp either side, plus random bit patterns.
std::vector<float> probes(int exponent_bits) {
  std::vector<float> out;
  for (uint32_t h = 0; h < 0x7fff; ++h) {
    const double v = decode(static_cast<uint16_t>(h), exponent_bits);
    const double next = h + 1 == static_cast<uint32_t>(((1 << exponent_bits) - 1) << (15 - exponent_bits))
                            ? std::ldexp(1.0, 1 << (exponent_bits - 1))
                            : decode(static_cast<uint16_t>(h + 1), exponent_bits);
    for (double x : {v, (v + next) / 2}) {
      if (!(x < 3.4028234663852886e38)) continue;
      const float f = static_cast<float>(x);
      for (float g : {f, std::nextafter(f, 0.0f), std::nextafter(f, INFINITY)}) {
        out.push_back(g);
        out.push_back(-g);
      }
    }
  }
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) out.push_back(float_of(static_cast<uint32_t>(rng())));
  for (float f : {0.0f, -0.0f, INFINITY, -INFINITY, std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(), 65504.0f, 65519.99f,
                  65520.0f, 5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f}) {
    out.push_back(f);
  }
  return out;
}

}  // namespace

TEST_CASE("bfloat16: every pattern round-trips through float; NaNs stay NaN with their sign") {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const bfloat16 b = bfloat16::from_bits(static_cast<uint16_t>(h));
    const float f = b;
    const double want = decode(static_cast<uint16_t>(h), 8);
    if (std::isnan(want)) {
      REQUIRE(std::isnan(f));
      REQUIRE(std::signbit(f) == ((h & 0x8000) != 0));
      REQUIRE(std::isnan(static_cast<float>(bfloat16(f))));
    } else {
      REQUIRE(static_cast<double>(f) == want);
      REQUIRE(bfloat16(f).bits == h);
    }
  }
}

TEST_CASE("float16: every pattern decodes to its value and round-trips; NaNs stay NaN") {
  for (uint32_t h = 0; h <= 0xffff; ++h) {
    const float f = float16::from_bits(static_cast<uint16_t>(h));
    const double want = decode(static_cast<uint16_t>(h), 5);
    if (std::isnan(want)) {
      REQUIRE(std::isnan(f));
      const uint16_t back = float16(f).bits;
      REQUIRE(std::isnan(static_cast<float>(float16::from_bits(back))));
      REQUIRE((back & 0x8000) == (h & 0x8000));  // the sign kept
      REQUIRE((back & 0x0200) != 0);             // quiet
      if (h & 0x0200) REQUIRE(back == h);        // a quiet NaN round-trips exactly
    } else {
      INFO("pattern 0x", std::hex, h);
      REQUIRE(static_cast<double>(f) == want);
      REQUIRE(float16(f).bits == h);
    }
  }
}

TEST_CASE("float -> bfloat16 and float16 round to nearest, ties to even, overflow to infinity") {
  for (float f : probes(8)) check_rounding(f, bfloat16(f).bits, 8, "bf16");
  for (float f : probes(5)) check_rounding(f, float16(f).bits, 5, "f16");
  // Hand-picked: the halfway points go to the even neighbour; past 65504 + 16 is infinity.
  CHECK(bfloat16(1.00390625f).bits == 0x3f80);  // 1 + 2^-8: halfway between 1 and 1 + 2^-7, to even (1)
  CHECK(bfloat16(1.01171875f).bits == 0x3f82);  // 1 + 3 * 2^-8: halfway, to even (1 + 2^-6)
  CHECK(float16(65519.0f).bits == 0x7bff);
  CHECK(float16(65520.0f).bits == 0x7c00);
  CHECK(float16(-1e6f).bits == 0xfc00);
  CHECK(float16(2.9802322e-08f).bits == 0x0000);  // 2^-25: halfway to the smallest subnormal, to even (0)
  CHECK(float16(2.9802326e-08f).bits == 0x0001);  // just past it
#ifdef __FLT16_MAX__
  // The compiler's own conversion (IEEE round to nearest even), where it has one.
  for (float f : probes(5)) {
    if (std::isnan(f)) continue;
    const _Float16 ref = static_cast<_Float16>(f);
    uint16_t want;
    std::memcpy(&want, &ref, sizeof want);
    INFO("f = ", f);
    REQUIRE(float16(f).bits == want);
  }
#endif
}

TEST_CASE("half tensors: fill, cast both ways, saturating integer casts, compare, where; arithmetic refuses") {
  for (DType dt : {DType::bf16, DType::f16}) {
    CAPTURE(std::string(dtype_name(dt)));
    const Tensor x = from_vector<float>({1.0f, -2.5f, 1.0f / 3.0f, 70000.0f, 1e-6f, 0.0f}, {2, 3});
    const Tensor h = ops::to_dtype(x, dt);
    CHECK(h.dtype() == dt);
    const std::vector<float> back = ops::to_dtype(h, DType::f32).to_vector<float>();
    for (size_t i = 0; i < back.size(); ++i) {
      const float want = dt == DType::bf16 ? static_cast<float>(bfloat16(x.to_vector<float>()[i]))
                                           : static_cast<float>(float16(x.to_vector<float>()[i]));
      CHECK(back[i] == want);
    }
    CHECK(back[0] == 1.0f);
    CHECK(back[1] == -2.5f);
    if (dt == DType::f16) CHECK(std::isinf(back[3]));  // past f16's range
    else CHECK(back[3] == 70144.0f);                   // bf16 keeps 8 bits of precision: 70000 -> 70144
    // Strided and broadcast copies into a half tensor, from f64 and i32.
    Tensor dst = zeros({2, 3}, {dt});
    ops::copy_(ops::transpose(dst, 0, 1), ops::transpose(ops::to_dtype(x, DType::f64), 0, 1));
    CHECK(ops::to_dtype(dst, DType::f32).to_vector<float>() == back);
    ops::copy_(dst, from_vector<int32_t>({7, -3, 1}, {3}));
    CHECK(dst.to_vector<float>() == std::vector<float>{7, -3, 1, 7, -3, 1});
    // To integers: through float, saturating, NaN to 0.
    const Tensor wild = ops::to_dtype(from_vector<float>({3e38f, -3e38f, NAN, 254.9f}, {4}), DType::bf16);
    CHECK(ops::to_dtype(wild, DType::i32).to_vector<int32_t>() == std::vector<int32_t>{INT32_MAX, INT32_MIN, 0, 255});
    // fill_, compare, where.
    Tensor f = empty({3}, {dt});
    ops::fill_(f, 0.1);
    CHECK(f.to_vector<double>()[0] == static_cast<double>(dt == DType::bf16 ? static_cast<float>(bfloat16(0.1f))
                                                                              : static_cast<float>(float16(0.1f))));
    const Tensor a = ops::to_dtype(from_vector<float>({1, 2, NAN}, {3}), dt);
    const Tensor b = ops::to_dtype(from_vector<float>({1, 3, NAN}, {3}), dt);
    CHECK(ops::compare(ops::CompareOp::eq, a, b).to_vector<uint8_t>() == std::vector<uint8_t>{1, 0, 0});
    CHECK(ops::compare(ops::CompareOp::lt, a, b).to_vector<uint8_t>() == std::vector<uint8_t>{0, 1, 0});
    const Tensor w = ops::where(from_vector<uint8_t>({1, 0, 1}, {3}), a, b);
    CHECK(w.dtype() == dt);
    CHECK(ops::to_dtype(w, DType::f32).to_vector<float>()[1] == 3.0f);
    CHECK(h.at({0, 1}) == -2.5);
    // Compute ops refuse them, naming the op.
    check_throws_with<DTypeError>([&] { ops::mul(h, h); }, std::string("got ") + dtype_name(dt));
    check_throws_with<DTypeError>([&] { ops::sum(h); }, std::string("got ") + dtype_name(dt));
  }
}

TEST_CASE("half tensors: bf16 <-> f16 casts go through float: rounded once, ranges clipped to infinity or zero") {
  // Every bf16 pattern cast to f16 is float16(float(b)); every f16 to bf16 is bfloat16(float(h)).
  std::vector<uint16_t> all(65536);
  for (uint32_t i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  Tensor b16 = empty({65536}, {DType::bf16}), f16 = empty({65536}, {DType::f16});
  std::memcpy(b16.raw_data(), all.data(), all.size() * 2);
  std::memcpy(f16.raw_data(), all.data(), all.size() * 2);
  const Tensor b_to_f = ops::to_dtype(b16, DType::f16), f_to_b = ops::to_dtype(f16, DType::bf16);
  const uint16_t* bf = static_cast<const uint16_t*>(b_to_f.raw_data());
  const uint16_t* fb = static_cast<const uint16_t*>(f_to_b.raw_data());
  int mismatches = 0;
  for (uint32_t i = 0; i < 65536; ++i) {
    const float vb = bfloat16::from_bits(all[i]), vf = float16::from_bits(all[i]);
    if (!std::isnan(vb) && bf[i] != float16(vb).bits) ++mismatches;
    if (!std::isnan(vf) && fb[i] != bfloat16(vf).bits) ++mismatches;
    if (std::isnan(vb) && !std::isnan(static_cast<float>(float16::from_bits(bf[i])))) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(fb[0x3c00] == 0x3f80);  // f16 1.0 -> bf16 1.0
  CHECK(bf[0x4780] == 0x7c00);  // bf16 65536 -> f16 infinity
  CHECK(bf[0x3380] == 0x0001);  // bf16 2^-24 -> f16's smallest subnormal
  CHECK(bf[0x3300] == 0x0000);  // bf16 2^-25: halfway below it, to even (0)
}

TEST_CASE("half tensors: safetensors F16 / BF16 round-trip bit for bit, and a model loads them into f32 weights") {
  TempDir dir;
  const std::string path = dir.file("half.safetensors");
  const Tensor x = from_vector<float>({0.5f, -1.25f, 3.14159f, 1e-5f, -65504.0f, 2.0f}, {2, 3});
  const Tensor b16 = ops::to_dtype(x, DType::bf16), f16 = ops::to_dtype(x, DType::f16);
  save_safetensors(path, {{"b", b16}, {"h", f16}});
  const SafetensorsFile file = load_safetensors(path);
  REQUIRE(file.tensors.size() == 2);
  for (const auto& [name, t] : file.tensors) {
    const Tensor& want = name == "b" ? b16 : f16;
    const std::string which = name;  // (clang: a structured binding cannot be captured by CAPTURE's lambda)
    CAPTURE(which);
    CHECK(t.dtype() == want.dtype());
    CHECK(t.shape() == want.shape());
    CHECK(std::memcmp(t.raw_data(), want.raw_data(), 12) == 0);
  }
  // A Linear(3 -> 2) whose weight comes from the BF16 tensor and bias from an F16 one.
  nn::Linear layer({.in_features = 3, .out_features = 2});
  const Tensor bias16 = ops::to_dtype(from_vector<float>({0.25f, -0.75f}, {2}), DType::f16);
  const std::string weights = dir.file("weights.safetensors");
  save_safetensors(weights, {{"weight", b16}, {"bias", bias16}});
  layer.load_state_dict(load_safetensors(weights).tensors);
  CHECK(layer.weight.dtype() == DType::f32);
  CHECK(layer.weight.to_vector<float>() == ops::to_dtype(b16, DType::f32).to_vector<float>());
  CHECK(layer.bias.to_vector<float>() == std::vector<float>{0.25f, -0.75f});
}
