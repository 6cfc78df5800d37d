// Classification augmentations: PIL-exact resizes, RandomResizedCrop statistics, flips, normalisation,
// random erasing, the eval transform, determinism and the data benchmark.
// Reference values marked "Pillow" were computed with Pillow 13.0 on the same inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <thread>

#include "core/error.h"
#include "core/parallel.h"
#include "datasets/bench.h"
#include "datasets/transforms.h"
#include "tests/datasets/helpers.h"

namespace unirep {
namespace {

using testing_data::pattern;
using testing_data::checksum;

std::vector<int> values(const Image& img) { return std::vector<int>(img.data.begin(), img.data.end()); }

TEST(Resize, BilinearDownMatchesPil) {
  const Image out = resize(pattern(7, 9), 4, 5, Interpolation::Bilinear);
  const std::vector<int> pil = {70,  118, 157, 125, 141, 139, 114, 141, 160, 137, 117, 124, 92,  135, 133,
                                138, 133, 116, 119, 131, 136, 135, 138, 143, 140, 126, 124, 121, 129, 125,
                                112, 155, 126, 145, 131, 121, 145, 133, 126, 147, 134, 122, 123, 131, 131,
                                96,  148, 132, 113, 160, 109, 128, 123, 116, 158, 137, 124, 111, 154, 93};
  EXPECT_EQ(values(out), pil);
}

TEST(Resize, BicubicDownMatchesPil) {
  const Image out = resize(pattern(7, 9), 4, 5, Interpolation::Bicubic);
  const std::vector<int> pil = {63,  118, 161, 129, 140, 138, 112, 143, 161, 139, 116, 123, 85,  137, 138,
                                143, 132, 116, 119, 130, 139, 135, 138, 140, 138, 127, 126, 125, 129, 124,
                                109, 157, 124, 149, 129, 123, 148, 135, 123, 148, 135, 122, 123, 127, 132,
                                97,  149, 134, 110, 159, 107, 124, 121, 111, 164, 138, 128, 106, 157, 91};
  EXPECT_EQ(values(out), pil);
  // Larger cases through fingerprints (Pillow): upsampling, and 60x80 down with antialiasing.
  EXPECT_EQ(checksum(resize(pattern(7, 9), 10, 12, Interpolation::Bicubic)), 8394726u);
  EXPECT_EQ(checksum(resize(pattern(60, 80), 17, 23, Interpolation::Bicubic)), 88080617u);
  EXPECT_EQ(checksum(resize(pattern(60, 80), 31, 45, Interpolation::Bilinear)), 1120698659u);
}

TEST(Resize, BoxAndSingleAxisMatchPil) {
  const Image box = resize_box(pattern(7, 9), 3, 3, Interpolation::Bicubic, 1.5, 0.5, 7.25, 6);
  const std::vector<int> pil_box = {131, 136, 128, 107, 125, 149, 131, 124, 136, 130, 134, 146, 153, 146,
                                    134, 140, 131, 119, 128, 132, 111, 139, 125, 113, 150, 139, 129};
  EXPECT_EQ(values(box), pil_box);
  // Width only (PIL skips the vertical pass): row 0 of 7x9 -> 7x4 bilinear.
  const Image w = resize(pattern(7, 9), 7, 4, Interpolation::Bilinear);
  const std::vector<int> row0 = {31, 84, 137, 106, 159, 205, 172, 156, 103, 61, 62, 115};
  EXPECT_EQ(std::vector<int>(w.data.begin(), w.data.begin() + 12), row0);
}

TEST(Resize, BilinearHandComputed) {
  // 1x4 -> 1x2 bilinear: scale 2, support 2, taps at centres 1 and 3 with weights (1, 3, 3, 1)/8 style
  // triangle: output 0 reads x in [0, 3): w(x) = 1 - |x + 0.5 - 1| / 2 = 0.75, 0.75, 0.25 -> normalised.
  Image img(1, 4, 1);
  img.data = {0, 80, 160, 240};
  const Image out = resize(img, 1, 2, Interpolation::Bilinear);
  // out0 = (0.75*0 + 0.75*80 + 0.25*160) / 1.75 = 57.14 -> 57; out1 mirrors: (0.25*80 + 0.75*160 + 0.75*240)/1.75
  EXPECT_EQ(out.data[0], 57);
  EXPECT_EQ(out.data[1], 183);
  // Identity size is a copy.
  EXPECT_EQ(resize(pattern(5, 6), 5, 6).data, pattern(5, 6).data);
}

TEST(Resize, ConstantSymmetryAndAntialias) {
  Image flat(37, 53, 3, 77);
  for (auto interp : {Interpolation::Bilinear, Interpolation::Bicubic}) {
    for (auto [h, w] : {std::pair<int64_t, int64_t>{11, 13}, {64, 90}, {37, 20}}) {
      const Image r = resize(flat, h, w, interp);
      for (uint8_t v : r.data) ASSERT_EQ(v, 77);
    }
  }
  // Mirror symmetry: resizing a mirrored image gives the mirrored result.
  Image img = pattern(30, 41);
  Image a = resize(img, 17, 19);
  hflip(img);
  Image b = resize(img, 17, 19);
  hflip(b);
  EXPECT_EQ(a.data, b.data);
  // Antialiasing: a 1-pixel checkerboard downsampled 4x is flat grey (no aliasing), not a new pattern.
  Image cb(64, 64, 1);
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 64; ++x) cb.at(y, x, 0) = ((x + y) % 2) ? 255 : 0;
  const Image small = resize(cb, 16, 16);
  for (int64_t y = 1; y < 15; ++y)
    for (int64_t x = 1; x < 15; ++x) ASSERT_NEAR(small.at(y, x, 0), 128, 2) << y << "," << x;
}

TEST(Resize, BadArguments) {
  EXPECT_THROW(resize(pattern(4, 4), 0, 3), Error);
  EXPECT_THROW(resize_box(pattern(4, 4), 2, 2, Interpolation::Bicubic, -1, 0, 2, 2), Error);
  EXPECT_THROW(resize_box(pattern(4, 4), 2, 2, Interpolation::Bicubic, 0, 0, 5, 2), Error);
}

TEST(Flip, HorizontalAndVerticalAreExact) {
  const Image img = pattern(5, 7);
  Image f = img;
  hflip(f);
  for (int64_t y = 0; y < 5; ++y)
    for (int64_t x = 0; x < 7; ++x)
      for (int c = 0; c < 3; ++c) ASSERT_EQ(f.at(y, x, c), img.at(y, 6 - x, c));
  hflip(f);
  EXPECT_EQ(f.data, img.data);
  Image v = img;
  vflip(v);
  for (int64_t y = 0; y < 5; ++y) ASSERT_EQ(v.at(y, 3, 1), img.at(4 - y, 3, 1));
  Image g(3, 4, 1);
  for (size_t i = 0; i < g.numel(); ++i) g.data[i] = uint8_t(i);
  hflip(g);
  EXPECT_EQ(values(g), (std::vector<int>{3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8}));
}

TEST(Crop, PadsOutside) {
  const Image img = pattern(4, 4);
  const Image c = crop(img, -1, 2, 3, 4, 9);
  EXPECT_EQ(c.shape_str(), "3x4x3");
  EXPECT_EQ(c.at(0, 0, 0), 9);                     // above the image
  EXPECT_EQ(c.at(1, 0, 1), img.at(0, 2, 1));       // inside
  EXPECT_EQ(c.at(2, 3, 2), 9);                     // right of the image
}

TEST(RandomResizedCrop, BoxDistributionMatchesTorchvision) {
  // Statistics of the accepted boxes, against 200,000 draws of torchvision's algorithm in NumPy:
  // at 375x500, mean area fraction 0.4331, std 0.2163, P(area < 0.3) 0.3219, std(log(w/h)) 0.1644.
  RandomResizedCropConfig cfg;
  Rng rng(11);
  const int n = 4000;
  double sum = 0, sum2 = 0, lsum = 0, lsum2 = 0;
  int small = 0;
  for (int i = 0; i < n; ++i) {
    const CropBox b = random_resized_crop_box(375, 500, cfg, rng);
    ASSERT_GE(b.top, 0);
    ASSERT_GE(b.left, 0);
    ASSERT_LE(b.top + b.height, 375);
    ASSERT_LE(b.left + b.width, 500);
    const double a = double(b.height * b.width) / (375.0 * 500.0);
    ASSERT_GE(a, 0.079);
    const double lr = std::log(double(b.width) / double(b.height));
    ASSERT_LE(std::abs(lr), std::log(4.0 / 3.0) + 0.02);
    sum += a;
    sum2 += a * a;
    lsum += lr;
    lsum2 += lr * lr;
    small += a < 0.3;
  }
  const double mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
  const double lmean = lsum / n, lsd = std::sqrt(lsum2 / n - lmean * lmean);
  EXPECT_NEAR(mean, 0.4331, 0.012);
  EXPECT_NEAR(sd, 0.2163, 0.01);
  EXPECT_NEAR(double(small) / n, 0.3219, 0.03);
  EXPECT_NEAR(lsd, 0.1644, 0.008);
  EXPECT_NEAR(lmean, 0.0308, 0.01);
}

TEST(RandomResizedCrop, FallbackIsTheClampedCenterCrop) {
  // A 10 x 1000 strip: no draw fits, so torchvision's fallback: h = 10, w = round(10 * 4/3) = 13, centred.
  RandomResizedCropConfig cfg;
  Rng rng(3);
  const CropBox b = random_resized_crop_box(10, 1000, cfg, rng);
  EXPECT_EQ(b.height, 10);
  EXPECT_EQ(b.width, 13);
  EXPECT_EQ(b.top, 0);
  EXPECT_EQ(b.left, (1000 - 13) / 2);
  const CropBox t = random_resized_crop_box(1000, 10, cfg, rng);  // tall: w = 10, h = round(10 / (3/4)) = 13
  EXPECT_EQ(t.width, 10);
  EXPECT_EQ(t.height, 13);
}

TEST(RandomResizedCrop, OutputSizeAndJpegPathAgree) {
  const Image photo = synthetic_photo(150, 200, 21);
  const auto jpeg = encode_jpeg(photo, 90);
  const Image decoded = decode_jpeg(jpeg.data(), jpeg.size());
  RandomResizedCropConfig cfg;
  for (int i = 0; i < 12; ++i) {
    Rng r1 = make_rng(5, 0, uint64_t(i)), r2 = make_rng(5, 0, uint64_t(i));
    const Image a = random_resized_crop(decoded, 64, 48, cfg, r1);
    const Image b = random_resized_crop_jpeg(jpeg.data(), jpeg.size(), 64, 48, cfg, r2, false);
    ASSERT_EQ(a.shape_str(), "64x48x3");
    // Without DCT scaling the region decode + crop-then-resize is exactly decode-then-crop-resize.
    ASSERT_EQ(a.data, b.data) << i;
  }
}

TEST(RandomResizedCrop, DctScaledDecodeStaysClose) {
  const Image photo = synthetic_photo(600, 800, 22);
  const auto jpeg = encode_jpeg(photo, 90);
  const Image decoded = decode_jpeg(jpeg.data(), jpeg.size());
  RandomResizedCropConfig cfg;
  cfg.scale_min = 0.5;  // crops >= 2x the 112 output: decoded at 1/2 or 1/4
  double total = 0;
  int64_t n = 0;
  for (int i = 0; i < 6; ++i) {
    Rng r1 = make_rng(6, 0, uint64_t(i)), r2 = make_rng(6, 0, uint64_t(i)), r3 = make_rng(6, 0, uint64_t(i));
    const Image a = random_resized_crop(decoded, 112, 112, cfg, r1);
    const Image b = random_resized_crop_jpeg(jpeg.data(), jpeg.size(), 112, 112, cfg, r2, true);
    const Image c = random_resized_crop_jpeg(jpeg.data(), jpeg.size(), 112, 112, cfg, r3, false);
    ASSERT_EQ(a.data, c.data);  // without DCT scaling: exact
    for (size_t k = 0; k < a.numel(); ++k) total += std::abs(int(a.data[k]) - int(b.data[k]));
    n += int64_t(a.numel());
  }
  // Different low-pass filters (scaled IDCT + bicubic vs bicubic alone) on a noisy image: a few levels.
  EXPECT_LT(total / double(n), 6.0);
  EXPECT_GT(total / double(n), 0.0);  // it did take the scaled path
}

TEST(Normalize, ValuesAndLayouts) {
  Image img(2, 3, 3);
  for (size_t i = 0; i < img.numel(); ++i) img.data[i] = uint8_t(i * 15);
  std::vector<float> hwc(18), chw(18);
  normalize_into(img, hwc.data(), Layout::HWC);
  normalize_into(img, chw.data(), Layout::CHW);
  const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
  for (int64_t y = 0; y < 2; ++y)
    for (int64_t x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c) {
        const float expect = (float(img.at(y, x, c)) / 255.f - mean[c]) / sd[c];
        ASSERT_EQ(hwc[size_t((y * 3 + x) * 3 + c)], expect);
        ASSERT_EQ(chw[size_t((c * 2 + y) * 3 + x)], expect);
      }
  EXPECT_FLOAT_EQ(hwc[0], -0.485f / 0.229f);
  // Padded (mmdet style, 0..255 statistics).
  std::vector<float> pad(3 * 4 * 5, -1.f);
  normalize_into_padded(img, pad.data(), 4, 5, Layout::CHW, Normalization::imagenet_255(), 0.f);
  EXPECT_NEAR(pad[0], (0.f - 123.675f) / 58.395f, 1e-5);
  EXPECT_EQ(pad[3], 0.f);       // right padding
  EXPECT_EQ(pad[4 * 5 - 1], 0.f);  // bottom padding
  EXPECT_THROW(normalize_into_padded(img, pad.data(), 1, 5, Layout::CHW), Error);
}

TEST(RandomErasing, ProbabilityAreaAndNoise) {
  RandomErasingConfig cfg;  // p 0.25, pixel mode, area [0.02, 1/3], log aspect [0.3, 3.33]
  const int64_t h = 32, w = 40, c = 3;
  std::vector<float> img(size_t(h * w * c));
  Rng rng(8);
  int erased = 0;
  double area_min = 1, area_max = 0, sum = 0, sum2 = 0;
  int64_t count = 0;
  const int draws = 2000;
  for (int i = 0; i < draws; ++i) {
    std::fill(img.begin(), img.end(), 100.f);
    const int n = random_erasing(img.data(), h, w, c, Layout::HWC, cfg, rng);
    int64_t changed = 0;
    for (float v : img)
      if (v != 100.f) {
        ++changed;
        sum += v;
        sum2 += double(v) * v;
        ++count;
      }
    if (n) {
      ++erased;
      const double a = double(changed) / double(h * w * c);
      area_min = std::min(area_min, a);
      area_max = std::max(area_max, a);
    } else {
      ASSERT_EQ(changed, 0);
    }
  }
  // Binomial(2000, 0.25): sd 0.0097.
  EXPECT_NEAR(double(erased) / draws, 0.25, 0.04);
  EXPECT_GE(area_min, 0.015);
  EXPECT_LE(area_max, 0.36);
  const double mean = sum / double(count), sd = std::sqrt(sum2 / double(count) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(sd, 1.0, 0.02);
  // CHW: the same box on every channel.
  cfg.probability = 1.0;
  cfg.mode = RandomErasingConfig::Mode::Const;
  std::vector<float> chw(size_t(h * w * c), 5.f);
  ASSERT_EQ(random_erasing(chw.data(), h, w, c, Layout::CHW, cfg, rng), 1);
  for (int64_t k = 0; k < h * w; ++k) {
    ASSERT_EQ(chw[size_t(k)] == 0.f, chw[size_t(h * w + k)] == 0.f);
    ASSERT_EQ(chw[size_t(k)] == 0.f, chw[size_t(2 * h * w + k)] == 0.f);
  }
}

TEST(EvalTransform, SizesAndCenterCrop) {
  const Image img = synthetic_photo(375, 500, 30);
  const Image e = eval_resize_crop(img, 224);
  EXPECT_EQ(e.shape_str(), "224x224x3");
  // Equivalent by hand: short side 256 -> 256 x int(256 * 500 / 375) = 341, crop offsets (16, round(58.5) = 58).
  const Image r = resize(img, 256, 341);
  EXPECT_EQ(e.data, crop(r, 16, 58, 224, 224).data);
  const Image big = eval_resize_crop(img, 384);  // warp
  EXPECT_EQ(big.data, resize(img, 384, 384).data);
  const Image tall = eval_resize_crop(synthetic_photo(300, 200, 31), 224, 0.95);
  EXPECT_EQ(tall.shape_str(), "224x224x3");
  // A tiny image is upsampled; crop_pct 1 means no margin.
  EXPECT_EQ(eval_resize_crop(synthetic_photo(20, 30, 32), 32, 1.0).shape_str(), "32x32x3");
  std::vector<float> out(224 * 224 * 3);
  imagenet_eval_transform(img, 224, out.data());
  std::vector<float> ref(224 * 224 * 3);
  normalize_into(e, ref.data(), Layout::HWC);
  EXPECT_EQ(out, ref);
}

TEST(TrainTransform, DeterministicForASeed) {
  const auto jpeg = encode_jpeg(synthetic_photo(180, 240, 40), 90);
  ImageNetTrainConfig cfg;
  cfg.size = 96;
  std::vector<float> a(96 * 96 * 3), b(96 * 96 * 3), c(96 * 96 * 3);
  Rng r1 = make_rng(1, 2, 3), r2 = make_rng(1, 2, 3), r3 = make_rng(1, 2, 4);
  imagenet_train_transform_jpeg(jpeg.data(), jpeg.size(), cfg, r1, a.data());
  imagenet_train_transform_jpeg(jpeg.data(), jpeg.size(), cfg, r2, b.data());
  imagenet_train_transform_jpeg(jpeg.data(), jpeg.size(), cfg, r3, c.data());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The decoded-image path gives the same result (no DCT scaling at this size).
  const Image img = decode_jpeg(jpeg.data(), jpeg.size());
  Rng r4 = make_rng(1, 2, 3);
  std::vector<float> d(96 * 96 * 3);
  imagenet_train_transform(img, cfg, r4, d.data());
  EXPECT_EQ(a, d);
  // A PNG handed to the JPEG entry point (ImageNet has a few) is decoded and gives the same result.
  const auto png = encode_png(img);
  Rng r5 = make_rng(1, 2, 3);
  std::vector<float> e(96 * 96 * 3);
  imagenet_train_transform_jpeg(png.data(), png.size(), cfg, r5, e.data());
  EXPECT_EQ(a, e);
  // The uint8 part alone.
  Rng r6 = make_rng(1, 2, 3);
  EXPECT_EQ(imagenet_train_augment(img, cfg, r6).shape_str(), "96x96x3");
  // Seeded from the Philox generator: reproducible too.
  Generator g1(9), g2(9);
  Rng p1 = make_rng(g1), p2 = make_rng(g2);
  EXPECT_EQ(p1(), p2());
  EXPECT_EQ(g1.offset(), 1u);
}

TEST(TrainTransform, ValuesInNormalisedRange) {
  const auto jpeg = encode_jpeg(synthetic_photo(200, 260, 41), 90);
  ImageNetTrainConfig cfg;
  cfg.erasing.probability = 0;
  std::vector<float> out(224 * 224 * 3);
  Rng rng(5);
  imagenet_train_transform_jpeg(jpeg.data(), jpeg.size(), cfg, rng, out.data());
  for (float v : out) {
    ASSERT_GE(v, -0.485f / 0.229f - 1e-5f);
    ASSERT_LE(v, (1.f - 0.406f) / 0.225f + 1e-5f);
  }
}

TEST(RandomNumbers, Distributions) {
  Rng rng(12345);
  // Ziggurat normals: moments and both tails (the |x| > 3.44 tail has its own code path).
  const int64_t n = 400000;
  std::vector<float> z(static_cast<size_t>(n));
  fill_normal(z.data(), n, rng);
  double m1 = 0, m2 = 0, m4 = 0;
  int64_t beyond2 = 0, beyond35 = 0;
  for (float v : z) {
    m1 += v;
    m2 += double(v) * v;
    m4 += double(v) * v * v * v;
    beyond2 += std::abs(v) > 2.0f;
    beyond35 += std::abs(v) > 3.5f;
  }
  m1 /= n, m2 /= n, m4 /= n;
  EXPECT_NEAR(m1, 0.0, 0.006);
  EXPECT_NEAR(m2, 1.0, 0.008);
  EXPECT_NEAR(m4, 3.0, 0.06);
  EXPECT_NEAR(double(beyond2) / n, 0.0455, 0.002);
  EXPECT_NEAR(double(beyond35) / n, 4.65e-4, 1.5e-4);
  // Integers: both ends included, uniform.
  std::vector<int> hist(7, 0);
  for (int i = 0; i < 70000; ++i) {
    const int64_t v = rand_int(rng, -3, 3);
    ASSERT_GE(v, -3);
    ASSERT_LE(v, 3);
    hist[size_t(v + 3)]++;
  }
  for (int c : hist) EXPECT_NEAR(c, 10000, 400);
  // Beta(0.8, 0.8) and Beta(2, 5) moments (the Gamma sampler for shapes below and above 1).
  double b1 = 0, b2 = 0, c1 = 0;
  for (int i = 0; i < 40000; ++i) {
    const double b = rand_beta(rng, 0.8, 0.8);
    b1 += b;
    b2 += b * b;
    c1 += rand_beta(rng, 2, 5);
  }
  EXPECT_NEAR(b1 / 40000, 0.5, 0.006);
  EXPECT_NEAR(b2 / 40000 - 0.25, 0.0962, 0.004);
  EXPECT_NEAR(c1 / 40000, 2.0 / 7.0, 0.004);
  // Streams per (seed, a, b) are distinct and reproducible.
  EXPECT_EQ(make_rng(1, 2, 3)(), make_rng(1, 2, 3)());
  EXPECT_NE(make_rng(1, 2, 3)(), make_rng(1, 2, 4)());
  EXPECT_NE(make_rng(1, 2, 3)(), make_rng(1, 3, 3)());
}

TEST(DataBench, ThroughputPerCore) {
  // ~100 images through the full pipeline, one thread per core the test may use (OMP_NUM_THREADS, as
  // launch/test.sh caps every test; all cores of this 2-core machine otherwise). The >= 400 img/s per
  // core requirement of the issue is asserted for optimised builds only (Debug code is several times
  // slower), on the CPU time the workers used: the wall-clock figure also counts whatever else runs on
  // this shared machine (both are printed).
  const int threads = std::max(1, std::min(num_threads(), int(std::max(1u, std::thread::hardware_concurrency()))));
  const AugmentBenchResult r = augment_bench(threads, 120, true);
  EXPECT_GT(r.images_per_second, 0);
  EXPECT_EQ(r.images, 120);
  EXPECT_GT(r.cpu_seconds, 0);
#ifdef NDEBUG
  // The figure is for the 2-core CI machine; other CPUs (the GPU machine's cores decode ~15%
  // slower) set their own floor through UNIREP_DATA_MIN_PER_CORE.
  const char* floor_env = std::getenv("UNIREP_DATA_MIN_PER_CORE");
  const double floor = floor_env ? std::atof(floor_env) : 400.0;
  EXPECT_GT(r.per_cpu_second, floor) << "img/s per core with " << threads << " threads";
#endif
}

}  // namespace
}  // namespace unirep
