// RandAugment ops against their definitions and against Pillow 13 (fingerprints of its outputs on the
// same 12x15 test image), the magnitude mapping, and the policy's randomness.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/error.h"
#include "datasets/rand_augment.h"
#include "datasets/transforms.h"
#include "tests/datasets/helpers.h"

namespace unirep {
namespace {

using testing_data::pattern;
using testing_data::checksum;

// A smooth-ish RGB test image with a few wrap-around edges.
Image smooth_pattern(int64_t h, int64_t w) {
  Image img(h, w, 3);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t c = 0; c < 3; ++c) img.at(y, x, c) = uint8_t((40 + 13 * x + 7 * y + 30 * c + ((x * y) % 5) * 6) % 256);
  return img;
}

const std::array<uint8_t, 3> kFill = {124, 116, 104};

TEST(RandAugmentOps, LutOpsMatchTheirDefinitions) {
  const Image src = pattern(6, 7);
  Image inv = src;
  invert(inv);
  for (size_t i = 0; i < src.numel(); ++i) ASSERT_EQ(inv.data[i], 255 - src.data[i]);
  for (int bits = 0; bits <= 8; ++bits) {
    Image p = src;
    posterize(p, bits);
    const int mask = bits >= 8 ? 0xFF : (0xFF & ~((1 << (8 - bits)) - 1));
    for (size_t i = 0; i < src.numel(); ++i) ASSERT_EQ(p.data[i], src.data[i] & mask) << bits;
  }
  for (int t : {0, 26, 128, 256}) {
    Image s = src;
    solarize(s, t);
    for (size_t i = 0; i < src.numel(); ++i) ASSERT_EQ(s.data[i], src.data[i] < t ? src.data[i] : 255 - src.data[i]);
  }
  Image sa = src;
  solarize_add(sa, 99);
  for (size_t i = 0; i < src.numel(); ++i)
    ASSERT_EQ(sa.data[i], src.data[i] < 128 ? std::min(255, src.data[i] + 99) : src.data[i]);
  Image b = src;
  enhance_brightness(b, 0.5);
  for (size_t i = 0; i < src.numel(); ++i) ASSERT_EQ(b.data[i], uint8_t(float(src.data[i]) * 0.5f));
}

TEST(RandAugmentOps, AutoContrastAndEqualize) {
  Image img(4, 4, 3);
  for (size_t i = 0; i < img.numel(); ++i) img.data[i] = uint8_t(100 + (i * 7) % 50);  // values 100..149
  Image ac = img;
  auto_contrast(ac);
  for (int c = 0; c < 3; ++c) {
    int lo = 255, hi = 0;
    for (int64_t k = 0; k < 16; ++k) lo = std::min<int>(lo, ac.data[size_t(3 * k + c)]), hi = std::max<int>(hi, ac.data[size_t(3 * k + c)]);
    EXPECT_EQ(lo, 0);
    EXPECT_EQ(hi, 255);
  }
  Image flat(3, 3, 3, 90);
  auto_contrast(flat);
  EXPECT_EQ(flat.data, Image(3, 3, 3, 90).data);  // hi <= lo: identity
  // Equalize flattens the histogram: on a skewed ramp, the output's quartiles are near 64 / 128 / 192.
  Image skew(64, 64, 1);
  for (int64_t i = 0; i < 64 * 64; ++i) skew.data[size_t(i)] = uint8_t(std::pow(double(i) / 4096.0, 3.0) * 255.0);
  equalize(skew);
  std::vector<uint8_t> sorted = skew.data;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NEAR(sorted[1024], 64, 8);
  EXPECT_NEAR(sorted[2048], 128, 8);
  EXPECT_NEAR(sorted[3072], 192, 8);
  // Pillow fingerprints.
  Image eq = pattern(40, 50);
  equalize(eq);
  EXPECT_EQ(checksum(eq), 2530551937u);
}

TEST(RandAugmentOps, MatchPillow) {
  const Image src = smooth_pattern(12, 15);
  auto run = [&](auto f) {
    Image img = src;
    f(img);
    return checksum(img);
  };
  const Interpolation bic = Interpolation::Bicubic;
  EXPECT_EQ(checksum(rotate(src, 17.3, bic, kFill)), 20117179u);
  EXPECT_EQ(checksum(rotate(src, -25.0, bic, kFill)), 19714147u);
  EXPECT_EQ(checksum(affine_transform(src, {1, 0.27, 0, 0, 1, 0}, bic, kFill)), 19260224u);
  EXPECT_EQ(checksum(affine_transform(src, {1, 0, 0, -0.2, 1, 0}, bic, kFill)), 20990918u);
  EXPECT_EQ(checksum(affine_transform(src, {1, 0, -0.405 * 15, 0, 1, 0}, bic, kFill)), 21409164u);
  EXPECT_EQ(checksum(affine_transform(src, {1, 0, 0, 0, 1, 0.33 * 12}, bic, kFill)), 17847147u);
  EXPECT_EQ(checksum(affine_transform(src, {0.9, 0.3, -2, -0.3, 0.9, 4}, Interpolation::Bilinear, kFill)), 19710970u);
  EXPECT_EQ(run([](Image& i) { enhance_color(i, 1.45); }), 20049222u);
  EXPECT_EQ(run([](Image& i) { enhance_color(i, 0.3); }), 20063713u);
  EXPECT_EQ(run([](Image& i) { enhance_contrast(i, 0.6); }), 20287285u);
  EXPECT_EQ(run([](Image& i) { enhance_contrast(i, 1.81); }), 19955829u);
  EXPECT_EQ(run([](Image& i) { enhance_brightness(i, 1.3); }), 24177148u);
  EXPECT_EQ(run([](Image& i) { enhance_sharpness(i, 1.7); }), 19971739u);
  EXPECT_EQ(run([](Image& i) { enhance_sharpness(i, 0.19); }), 19871423u);
  EXPECT_EQ(run([](Image& i) { equalize(i); }), 19981586u);
  EXPECT_EQ(run([](Image& i) { auto_contrast(i); }), 20007155u);
  // Two explicit rows: the fill colour outside the rotated image, and the truncated cubic overshoot.
  const Image rot = rotate(src, 17.3, bic, kFill);
  const std::vector<int> row0 = {124, 116, 104, 124, 116, 104, 124, 116, 104, 124, 116, 104, 124, 116, 104,
                                 123, 153, 183, 137, 167, 197, 159, 189, 219, 172, 202, 252, 181, 207, 129,
                                 209, 250, 0,   230, 32,  38,  238, 0,   42,  255, 31,  61,  124, 116, 104};
  EXPECT_EQ(std::vector<int>(rot.data.begin(), rot.data.begin() + 45), row0);
}

TEST(RandAugmentOps, RightAngleRotationsAreTransposes) {
  const Image sq = pattern(9, 9);
  const Image r90 = rotate(sq, 90, Interpolation::Bicubic, kFill);
  const Image r270 = rotate(sq, -90, Interpolation::Bicubic, kFill);
  const Image r180 = rotate(pattern(5, 8), 180, Interpolation::Bicubic, kFill);
  for (int64_t y = 0; y < 9; ++y)
    for (int64_t x = 0; x < 9; ++x)
      for (int c = 0; c < 3; ++c) {
        ASSERT_EQ(r90.at(y, x, c), sq.at(x, 8 - y, c));   // counter-clockwise
        ASSERT_EQ(r270.at(y, x, c), sq.at(8 - x, y, c));  // clockwise
      }
  const Image p = pattern(5, 8);
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 8; ++x) ASSERT_EQ(r180.at(y, x, 1), p.at(4 - y, 7 - x, 1));
  // 360 and 0 are the identity; the generic path at 90 degrees on a square agrees with the transpose
  // (PIL's matrix entries are rounded to 15 decimals, so the samples land exactly on pixel centres).
  EXPECT_EQ(rotate(sq, 360, Interpolation::Bicubic, kFill).data, sq.data);
  const double t = -90.0 * 3.14159265358979323846 / 180.0;
  auto r15 = [](double v) { return std::nearbyint(v * 1e15) / 1e15; };
  std::array<double, 6> m = {r15(std::cos(t)), r15(std::sin(t)), 0, r15(-std::sin(t)), r15(std::cos(t)), 0};
  m[2] = m[0] * -4.5 + m[1] * -4.5 + 4.5;
  m[5] = m[3] * -4.5 + m[4] * -4.5 + 4.5;
  EXPECT_EQ(affine_transform(sq, m, Interpolation::Bicubic, kFill).data, r90.data);
}

TEST(RandAugmentOps, VectorisedRgbPathEqualsScalarPerChannel) {
  // RGB bicubic affines run vectorised paths (4 pixels at a time, transposed for the y direction);
  // one-channel images run the scalar per-pixel code. Per channel they must agree exactly.
  Image photo(48, 70, 3);
  for (int64_t y = 0; y < 48; ++y)
    for (int64_t x = 0; x < 70; ++x)
      for (int c = 0; c < 3; ++c)
        photo.at(y, x, c) = uint8_t(128 + 100 * std::sin(0.31 * x + 0.17 * y + c) * std::cos(0.23 * y - 0.4 * x * c));
  const std::vector<std::array<double, 6>> mats = {{1, 0.27, 0, 0, 1, 0},      {1, -0.3, 0, 0, 1, 0},
                                                   {1, 0, -28.35, 0, 1, 0},     {1, 0, 13.7, 0, 1, 0},
                                                   {1, 0, 0, 0.21, 1, 0},       {1, 0, 0, -0.27, 1, 0},
                                                   {1, 0, 0, 0, 1, 19.44},      {0.96, 0.27, -20, -0.27, 0.96, 30}};
  for (const auto& m : mats) {
    const Image rgb = affine_transform(photo, m, Interpolation::Bicubic, kFill);
    for (int c = 0; c < 3; ++c) {
      Image ch(48, 70, 1);
      for (size_t i = 0; i < ch.numel(); ++i) ch.data[i] = photo.data[3 * i + size_t(c)];
      const std::array<uint8_t, 3> f = {kFill[size_t(c)], 0, 0};
      const Image out = affine_transform(ch, m, Interpolation::Bicubic, f);
      for (size_t i = 0; i < out.numel(); ++i)
        ASSERT_EQ(out.data[i], rgb.data[3 * i + size_t(c)]) << "matrix " << m[0] << " " << m[1] << " " << m[2] << " "
                                                             << m[3] << " " << m[4] << " " << m[5] << " pixel " << i;
    }
  }
}

TEST(RandAugmentOps, TranslateByWholePixelsShifts) {
  const Image src = pattern(8, 10);
  const Image t = affine_transform(src, {1, 0, 3, 0, 1, 0}, Interpolation::Bicubic, kFill);  // reads x + 3
  for (int64_t y = 0; y < 8; ++y)
    for (int64_t x = 0; x < 10; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(t.at(y, x, c), x + 3 < 10 ? src.at(y, x + 3, c) : kFill[size_t(c)]);
  // Grey images go through the scalar path with the same semantics.
  Image g(6, 6, 1);
  for (size_t i = 0; i < g.numel(); ++i) g.data[i] = uint8_t(i * 7);
  const Image gt = affine_transform(g, {1, 0, 0, 0, 1, -2}, Interpolation::Bicubic, kFill);
  EXPECT_EQ(gt.at(0, 3, 0), 124);
  EXPECT_EQ(gt.at(4, 3, 0), g.at(2, 3, 0));
}

TEST(RandAugment, MagnitudeMapping) {
  RandAugmentConfig cfg;
  Rng rng(1);
  auto arg = [&](AugmentOp op, double m) { return augment_op_argument(op, m, cfg, rng); };
  EXPECT_EQ(arg(AugmentOp::PosterizeIncreasing, 9), 1);   // 4 - int(3.6)
  EXPECT_EQ(arg(AugmentOp::PosterizeIncreasing, 0), 4);
  EXPECT_EQ(arg(AugmentOp::PosterizeIncreasing, 10), 0);
  EXPECT_EQ(arg(AugmentOp::SolarizeIncreasing, 9), 26);   // 256 - int(230.4)
  EXPECT_EQ(arg(AugmentOp::SolarizeIncreasing, 0), 256);
  EXPECT_EQ(arg(AugmentOp::SolarizeAdd, 9), 99);          // int(99.0)
  EXPECT_EQ(arg(AugmentOp::SolarizeAdd, 9.5), 104);
  std::map<double, int> rot, shear, tr, enh;
  for (int i = 0; i < 400; ++i) {
    rot[arg(AugmentOp::Rotate, 9)]++;
    shear[arg(AugmentOp::ShearX, 9)]++;
    tr[arg(AugmentOp::TranslateYRel, 9)]++;
    enh[arg(AugmentOp::ContrastIncreasing, 9)]++;
  }
  ASSERT_EQ(rot.size(), 2u);
  EXPECT_DOUBLE_EQ(rot.begin()->first, -27.0);
  EXPECT_DOUBLE_EQ(rot.rbegin()->first, 27.0);
  EXPECT_NEAR(rot.begin()->second, 200, 45);  // the sign is a fair coin
  EXPECT_DOUBLE_EQ(shear.rbegin()->first, 0.27);
  EXPECT_DOUBLE_EQ(tr.rbegin()->first, 0.9 * 0.45);
  ASSERT_EQ(enh.size(), 2u);
  EXPECT_DOUBLE_EQ(enh.begin()->first, 1.0 - 0.81);
  EXPECT_DOUBLE_EQ(enh.rbegin()->first, 1.81);
  for (int i = 0; i < 40; ++i) {  // at m = 10: 1 - 0.9 is clamped to exactly 0.1 (timm's max(0.1, .))
    const double f = arg(AugmentOp::ColorIncreasing, 10);
    ASSERT_TRUE(f == 0.1 || f == 1.9) << f;
  }
  EXPECT_EQ(arg(AugmentOp::Invert, 9), 0);
}

TEST(RandAugment, ParseConfigString) {
  const RandAugmentConfig c = parse_rand_augment("rand-m9-mstd0.5-inc1");
  EXPECT_EQ(c.num_ops, 2);
  EXPECT_EQ(c.magnitude, 9);
  EXPECT_EQ(c.magnitude_std, 0.5);
  EXPECT_EQ(c.prob, 0.5);
  EXPECT_EQ(c.ops.size(), 15u);
  EXPECT_EQ(c.fill, kFill);
  EXPECT_EQ(std::string(augment_op_name(c.ops[4])), "PosterizeIncreasing");
  const RandAugmentConfig d = parse_rand_augment("rand-m7-n3-mstd0-mmax12-p0.7-inc1");
  EXPECT_EQ(d.num_ops, 3);
  EXPECT_EQ(d.magnitude, 7);
  EXPECT_EQ(d.magnitude_std, 0);
  EXPECT_EQ(d.magnitude_max, 12);
  EXPECT_DOUBLE_EQ(d.prob, 0.7);
  EXPECT_THROW(parse_rand_augment("rand-m9-mstd0.5"), Error);  // the non-increasing set
  EXPECT_THROW(parse_rand_augment("augmix-m9"), Error);
  EXPECT_THROW(parse_rand_augment("rand-q9-inc1"), Error);
  EXPECT_THROW(parse_rand_augment("rand-mx-inc1"), Error);
}

TEST(RandAugment, PolicyAppliesAboutOneOpPerImage) {
  // 2 ops, each with probability 0.5: the image is unchanged with probability ~0.25 (less a little,
  // since an op can be a no-op only by chance), and the ops are drawn uniformly with replacement.
  RandAugmentConfig only_invert;
  only_invert.ops = {AugmentOp::Invert};
  const Image src = pattern(8, 8);
  int unchanged = 0, inverted = 0;
  Rng rng(17);
  for (int i = 0; i < 2000; ++i) {
    Image img = src;
    rand_augment(img, only_invert, rng);
    if (img.data == src.data) {
      ++unchanged;  // 0 or 2 inversions
    } else {
      ++inverted;  // exactly one
    }
  }
  // P(exactly one applied) = 2 * 0.5 * 0.5 = 0.5.
  EXPECT_NEAR(double(inverted) / 2000, 0.5, 0.04);
  // Determinism and output shape on a real-sized image with the full op set.
  const Image photo = resize(pattern(50, 60), 64, 64);
  RandAugmentConfig cfg;
  Image a = photo, b = photo;
  Rng r1(99), r2(99);
  for (int i = 0; i < 20; ++i) {
    rand_augment(a, cfg, r1);
    rand_augment(b, cfg, r2);
    ASSERT_EQ(a.shape_str(), "64x64x3");
  }
  EXPECT_EQ(a.data, b.data);
}

TEST(RandAugment, BadInput) {
  Image two;
  two.height = 2;
  two.width = 2;
  two.channels = 2;
  two.data.resize(8);
  EXPECT_THROW(invert(two), Error);
  Image ok = pattern(4, 4);
  EXPECT_THROW(posterize(ok, -1), Error);
  RandAugmentConfig empty;
  empty.ops.clear();
  Rng rng(0);
  EXPECT_THROW(rand_augment(ok, empty, rng), Error);
}

}  // namespace
}  // namespace unirep
