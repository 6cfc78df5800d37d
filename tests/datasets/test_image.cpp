// JPEG/PNG codecs: round trips, PIL reference decodes, region and DCT-scaled decoding, corrupt input.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "datasets/bench.h"
#include "datasets/image.h"
#include "datasets/random.h"
#include "tests/datasets/helpers.h"

namespace unirep {
namespace {

using testing_data::error_of;

double psnr(const Image& a, const Image& b) {
  EXPECT_EQ(a.numel(), b.numel());
  double se = 0;
  for (size_t i = 0; i < a.numel(); ++i) se += double(a.data[i] - b.data[i]) * double(a.data[i] - b.data[i]);
  const double mse = se / double(a.numel());
  return mse == 0 ? 99.0 : 10.0 * std::log10(255.0 * 255.0 / mse);
}

Image grey_of(const Image& rgb) {
  Image g(rgb.height, rgb.width, 1);
  for (size_t i = 0; i < g.numel(); ++i) g.data[i] = rgb.data[3 * i + 1];
  return g;
}

// A 5x4 palette PNG (4-bit indices, 11 colours) written by Pillow; index (x, y) = (3x + 5y) % 11 and
// colour i = (20 i, 50 i + 7, 255 - i).
const std::vector<uint8_t> kPalettePng = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x05, 0x00, 0x00, 0x00, 0x04, 0x04, 0x03, 0x00, 0x00, 0x00, 0xb4, 0x1d, 0xe8, 0x73, 0x00, 0x00, 0x00,
    0x21, 0x50, 0x4c, 0x54, 0x45, 0x00, 0x07, 0xff, 0x14, 0x39, 0xfe, 0x28, 0x6b, 0xfd, 0x3c, 0x9d, 0xfc, 0x50,
    0xcf, 0xfb, 0x64, 0x01, 0xfa, 0x78, 0x33, 0xf9, 0x8c, 0x65, 0xf8, 0xa0, 0x97, 0xf7, 0xb4, 0xc9, 0xf6, 0xc8,
    0xfb, 0xf5, 0x06, 0xac, 0x0e, 0x20, 0x00, 0x00, 0x00, 0x18, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
    0xce, 0x14, 0x60, 0x88, 0x60, 0x4e, 0x60, 0xf1, 0x62, 0x58, 0xc0, 0xb2, 0x34, 0xfa, 0x07, 0x00, 0x17, 0x04,
    0x04, 0x22, 0x92, 0xb6, 0xe4, 0xb1, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

// An 8x8 CMYK JPEG (quality 95) written by Pillow, with the Adobe marker and inverted storage;
// C = 30 x, M = 30 y, Y = 100, K = 40. Pillow decodes pixel (0, 0) to RGB (215, 215, 131).
const std::vector<uint8_t> kCmykJpeg = {
    0xff, 0xd8, 0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x02, 0x02,
    0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03, 0x04, 0x06, 0x05, 0x06, 0x06, 0x06,
    0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09, 0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a,
    0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c, 0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00,
    0x14, 0x08, 0x00, 0x08, 0x00, 0x08, 0x04, 0x43, 0x11, 0x00, 0x4d, 0x11, 0x00, 0x59, 0x11, 0x00, 0x4b, 0x11,
    0x00, 0xff, 0xc4, 0x00, 0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4,
    0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00, 0x00, 0x01,
    0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22,
    0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62,
    0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36,
    0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
    0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
    0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2,
    0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2,
    0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1,
    0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9,
    0xfa, 0xff, 0xda, 0x00, 0x0e, 0x04, 0x43, 0x00, 0x4d, 0x00, 0x59, 0x00, 0x4b, 0x00, 0x00, 0x3f, 0x00, 0xf5,
    0x8f, 0xf8, 0x38, 0x8f, 0xfe, 0x63, 0xbf, 0xf6, 0xd3, 0xfa, 0xd7, 0xac, 0x7f, 0xc4, 0x44, 0x7f, 0xf5, 0x3c,
    0xff, 0x00, 0xe4, 0xcf, 0xff, 0x00, 0x5e, 0xbd, 0xb2, 0xbf, 0x57, 0x2b, 0xff, 0xd9};

TEST(ImageCodec, JpegRoundTripPsnr) {
  const Image img = synthetic_photo(96, 128, 1);
  const auto bytes = encode_jpeg(img, 90);
  EXPECT_EQ(image_format(bytes.data(), bytes.size()), "jpeg");
  const JpegHeader h = read_jpeg_header(bytes.data(), bytes.size());
  EXPECT_EQ(h.height, 96);
  EXPECT_EQ(h.width, 128);
  EXPECT_EQ(h.channels, 3);
  EXPECT_FALSE(h.progressive);
  const Image dec = decode_jpeg(bytes.data(), bytes.size());
  ASSERT_EQ(dec.shape_str(), "96x128x3");
  // The synthetic photo has pixel-level noise and texture (hard for JPEG): q90 still keeps > 24 dB.
  EXPECT_GT(psnr(img, dec), 24.0);
  EXPECT_LT(psnr(img, dec), 60.0);  // and it is lossy: a real JPEG round trip happened
  // Higher quality is closer.
  const auto q98 = encode_jpeg(img, 98);
  EXPECT_GT(psnr(img, decode_jpeg(q98.data(), q98.size())), psnr(img, dec));
  // A smooth image keeps much more.
  Image smooth(64, 80, 3);
  for (int64_t y = 0; y < 64; ++y)
    for (int64_t x = 0; x < 80; ++x)
      for (int c = 0; c < 3; ++c)
        smooth.at(y, x, c) = uint8_t(128 + 60 * std::sin(x / 9.0 + c) * std::cos(y / 7.0 - c));
  const auto sb = encode_jpeg(smooth, 90);
  EXPECT_GT(psnr(smooth, decode_jpeg(sb.data(), sb.size())), 36.0);
}

TEST(ImageCodec, JpegGreyAndChannelOptions) {
  const Image grey = grey_of(synthetic_photo(40, 56, 2));
  const auto bytes = encode_jpeg(grey, 95);
  EXPECT_EQ(read_jpeg_header(bytes.data(), bytes.size()).channels, 1);
  JpegDecodeOptions keep;
  keep.channels = 0;
  const Image g1 = decode_jpeg(bytes.data(), bytes.size(), keep);
  ASSERT_EQ(g1.channels, 1);
  EXPECT_GT(psnr(grey, g1), 35.0);
  const Image rgb = decode_jpeg(bytes.data(), bytes.size());  // default: RGB
  ASSERT_EQ(rgb.channels, 3);
  for (size_t i = 0; i < g1.numel(); ++i) {
    ASSERT_EQ(rgb.data[3 * i], g1.data[i]);
    ASSERT_EQ(rgb.data[3 * i + 2], g1.data[i]);
  }
}

TEST(ImageCodec, CmykJpegConvertsLikePil) {
  const Image rgb = decode_jpeg(kCmykJpeg.data(), kCmykJpeg.size());
  ASSERT_EQ(rgb.shape_str(), "8x8x3");
  // Pillow (its own libjpeg build): (215, 215, 131) at (0, 0); allow a grey level for the IDCT.
  EXPECT_NEAR(rgb.at(0, 0, 0), 215, 1);
  EXPECT_NEAR(rgb.at(0, 0, 1), 215, 1);
  EXPECT_NEAR(rgb.at(0, 0, 2), 131, 1);
  // C grows along x: red falls, green and blue stay.
  EXPECT_LT(rgb.at(0, 7, 0), rgb.at(0, 0, 0) - 100);
  EXPECT_NEAR(rgb.at(0, 7, 1), 215, 2);
}

TEST(ImageCodec, PngRoundTripIsExact) {
  const Image rgb = synthetic_photo(33, 47, 3);
  const auto bytes = encode_png(rgb);
  EXPECT_EQ(image_format(bytes.data(), bytes.size()), "png");
  EXPECT_EQ(decode_png(bytes.data(), bytes.size()).data, rgb.data);
  EXPECT_EQ(decode_image(bytes.data(), bytes.size()).data, rgb.data);
  const Image grey = grey_of(rgb);
  const auto gb = encode_png(grey);
  const Image g = decode_png(gb.data(), gb.size(), 0);
  ASSERT_EQ(g.channels, 1);
  EXPECT_EQ(g.data, grey.data);
  EXPECT_EQ(decode_png_indices(gb.data(), gb.size()).data, grey.data);
  // Grey to RGB replicates; RGB to grey is PIL's luma.
  const Image g3 = decode_png(gb.data(), gb.size(), 3);
  EXPECT_EQ(g3.at(5, 7, 0), grey.at(5, 7, 0));
  EXPECT_EQ(g3.at(5, 7, 2), grey.at(5, 7, 0));
  const Image l = decode_png(bytes.data(), bytes.size(), 1);
  const int r = rgb.at(4, 9, 0), gg = rgb.at(4, 9, 1), b = rgb.at(4, 9, 2);
  EXPECT_EQ(l.at(4, 9, 0), (r * 19595 + gg * 38470 + b * 7471 + 0x8000) >> 16);
}

TEST(ImageCodec, PalettePngIndicesAndColours) {
  const Image idx = decode_png_indices(kPalettePng.data(), kPalettePng.size());
  ASSERT_EQ(idx.shape_str(), "4x5x1");
  const Image rgb = decode_png(kPalettePng.data(), kPalettePng.size());
  ASSERT_EQ(rgb.shape_str(), "4x5x3");
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x) {
      const int i = (3 * x + 5 * y) % 11;
      ASSERT_EQ(idx.at(y, x, 0), i) << y << "," << x;
      ASSERT_EQ(rgb.at(y, x, 0), (20 * i) % 256);
      ASSERT_EQ(rgb.at(y, x, 1), (50 * i + 7) % 256);
      ASSERT_EQ(rgb.at(y, x, 2), 255 - i);
    }
  // A colour PNG has no indices.
  const auto colour = encode_png(synthetic_photo(4, 4, 0));
  EXPECT_NE(error_of([&] { decode_png_indices(colour.data(), colour.size()); }).find("decode_png_indices"),
            std::string::npos);
}

// Pillow-written PNGs with transparency; Pillow's convert("RGB") drops it.
const std::vector<uint8_t> kPaletteTrns = {  // 3x2 palette, index 1 transparent
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x02, 0x03, 0x00, 0x00, 0x00, 0xe0, 0x1a, 0x8e, 0x89, 0x00, 0x00, 0x00,
    0x09, 0x50, 0x4c, 0x54, 0x45, 0x0a, 0x14, 0x1e, 0x28, 0x32, 0x3c, 0x46, 0x50, 0x5a, 0x16, 0xac, 0x84, 0x74,
    0x00, 0x00, 0x00, 0x02, 0x74, 0x52, 0x4e, 0x53, 0xff, 0x00, 0xe5, 0xb7, 0x30, 0x4a, 0x00, 0x00, 0x00, 0x0c,
    0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x90, 0x60, 0x98, 0x00, 0x00, 0x00, 0xdc, 0x00, 0xa9, 0x6c, 0xe7,
    0xc0, 0x23, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
const std::vector<uint8_t> kRgba = {  // 2x2 RGBA
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06, 0x00, 0x00, 0x00, 0x72, 0xb6, 0x0d, 0x24, 0x00, 0x00, 0x00,
    0x1a, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x64, 0x64, 0x62, 0x66, 0x60, 0x66, 0x66, 0x6e, 0x60, 0x61,
    0x63, 0x63, 0xfb, 0xcf, 0xcc, 0xcc, 0xcc, 0x01, 0x00, 0x0b, 0xae, 0x01, 0xb7, 0xc7, 0xf6, 0x6e, 0x40, 0x00,
    0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};
const std::vector<uint8_t> kGreyAlpha = {  // 2x1 LA
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x08, 0x04, 0x00, 0x00, 0x00, 0x5e, 0x2b, 0xb7, 0x01, 0x00, 0x00, 0x00,
    0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x4c, 0x61, 0x30, 0xfa, 0x0f, 0x00, 0x02, 0xfd, 0x01, 0x97,
    0x19, 0x8d, 0x37, 0xef, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

TEST(ImageCodec, TransparencyIsDropped) {
  const Image p = decode_png(kPaletteTrns.data(), kPaletteTrns.size());
  ASSERT_EQ(p.shape_str(), "2x3x3");
  EXPECT_EQ(std::vector<int>(p.data.begin(), p.data.end()),
            (std::vector<int>{10, 20, 30, 40, 50, 60, 70, 80, 90, 70, 80, 90, 40, 50, 60, 10, 20, 30}));
  EXPECT_EQ(decode_png_indices(kPaletteTrns.data(), kPaletteTrns.size()).data, (std::vector<uint8_t>{0, 1, 2, 2, 1, 0}));
  const Image rgba = decode_png(kRgba.data(), kRgba.size());
  EXPECT_EQ(std::vector<int>(rgba.data.begin(), rgba.data.end()), (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  const Image la = decode_png(kGreyAlpha.data(), kGreyAlpha.size(), 0);
  ASSERT_EQ(la.shape_str(), "1x2x1");
  EXPECT_EQ(la.data, (std::vector<uint8_t>{100, 150}));
  EXPECT_EQ(decode_png(kGreyAlpha.data(), kGreyAlpha.size()).shape_str(), "1x2x3");
}

TEST(ImageCodec, RegionDecodeIsBitIdentical) {
  const Image img = synthetic_photo(120, 150, 4);
  for (bool progressive : {false, true}) {
    const auto bytes = encode_jpeg(img, 90, progressive);
    EXPECT_EQ(read_jpeg_header(bytes.data(), bytes.size()).progressive, progressive);
    const Image full = decode_jpeg(bytes.data(), bytes.size());
    Rng rng(7);
    for (int t = 0; t < 40; ++t) {
      JpegDecodeOptions o;
      o.region_x = rand_int(rng, 0, 140);
      o.region_y = rand_int(rng, 0, 110);
      o.region_width = rand_int(rng, 1, 150 - o.region_x);
      o.region_height = rand_int(rng, 1, 120 - o.region_y);
      const JpegDecoded d = decode_jpeg_region(bytes.data(), bytes.size(), o);
      ASSERT_LE(d.x0, o.region_x);
      ASSERT_GE(d.x0 + d.image.width, o.region_x + o.region_width);
      ASSERT_EQ(d.y0, o.region_y);
      ASSERT_EQ(d.image.height, o.region_height);
      for (int64_t y = 0; y < d.image.height; ++y)
        for (int64_t x = 0; x < d.image.width; ++x)
          for (int c = 0; c < 3; ++c)
            ASSERT_EQ(d.image.at(y, x, c), full.at(y + d.y0, x + d.x0, c))
                << "progressive " << progressive << " region " << o.region_x << "," << o.region_y << " "
                << o.region_width << "x" << o.region_height << " at " << y << "," << x;
    }
  }
}

TEST(ImageCodec, FastModeDecodesRegions) {
  // libjpeg's fast IDCT and merged (non-fancy) upsampling: close to the accurate decode, and region
  // decoding (skip/crop with the merged upsampler) works there too.
  const Image img = synthetic_photo(96, 120, 8);
  const auto bytes = encode_jpeg(img, 90);
  JpegDecodeOptions fast;
  fast.fast = true;
  const Image f = decode_jpeg(bytes.data(), bytes.size(), fast);
  EXPECT_GT(psnr(decode_jpeg(bytes.data(), bytes.size()), f), 30.0);
  fast.region_x = 33;
  fast.region_y = 17;
  fast.region_width = 50;
  fast.region_height = 41;
  const JpegDecoded d = decode_jpeg_region(bytes.data(), bytes.size(), fast);
  EXPECT_EQ(d.y0, 17);
  EXPECT_EQ(d.image.height, 41);
  EXPECT_LE(d.x0, 33);
  EXPECT_GE(d.x0 + d.image.width, 83);
}

TEST(ImageCodec, DctScaledDecode) {
  const Image img = synthetic_photo(150, 203, 5);
  const auto bytes = encode_jpeg(img, 92);
  const Image full = decode_jpeg(bytes.data(), bytes.size());
  for (int s : {1, 2, 4, 7}) {
    JpegDecodeOptions o;
    o.scale_num = s;
    const Image d = decode_jpeg(bytes.data(), bytes.size(), o);
    EXPECT_EQ(d.height, jpeg_scaled_size(150, s));
    EXPECT_EQ(d.width, jpeg_scaled_size(203, s));
  }
  // At 1/2 each output pixel is close to the mean of its 2x2 block of the full decode.
  JpegDecodeOptions half;
  half.scale_num = 4;
  const Image d = decode_jpeg(bytes.data(), bytes.size(), half);
  double err = 0;
  int64_t n = 0;
  for (int64_t y = 0; y < 74; ++y)
    for (int64_t x = 0; x < 101; ++x)
      for (int c = 0; c < 3; ++c) {
        const double m = (full.at(2 * y, 2 * x, c) + full.at(2 * y + 1, 2 * x, c) + full.at(2 * y, 2 * x + 1, c) +
                          full.at(2 * y + 1, 2 * x + 1, c)) /
                         4.0;
        err += std::abs(m - d.at(y, x, c));
        ++n;
      }
  EXPECT_LT(err / double(n), 4.0);
}

TEST(ImageCodec, CorruptJpegThrows) {
  const auto bytes = encode_jpeg(synthetic_photo(64, 64, 6), 90);
  // Truncated: libjpeg would pad with grey and warn; strict mode makes it an error.
  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(bytes.size() / 2));
  const std::string msg = error_of([&] { decode_jpeg(cut.data(), cut.size()); });
  EXPECT_NE(msg.find("decode_jpeg: corrupt JPEG"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Premature end"), std::string::npos) << msg;
  JpegDecodeOptions lenient;
  lenient.strict = false;
  EXPECT_EQ(decode_jpeg(cut.data(), cut.size(), lenient).shape_str(), "64x64x3");
  // Garbage, an empty buffer, a cut header.
  std::vector<uint8_t> junk(300, 0x5A);
  EXPECT_THROW(decode_jpeg(junk.data(), junk.size()), Error);
  EXPECT_THROW(decode_jpeg(bytes.data(), 0), Error);
  EXPECT_THROW(read_jpeg_header(bytes.data(), 20), Error);
  EXPECT_THROW(decode_image(junk.data(), junk.size()), Error);
  // Corrupt entropy-coded data (a marker in the middle of the scan).
  std::vector<uint8_t> bad = bytes;
  for (size_t i = bad.size() / 2; i < bad.size() / 2 + 16; ++i) bad[i] = 0xFF;
  bad[bad.size() / 2 + 16] = 0xD9;
  EXPECT_THROW(decode_jpeg(bad.data(), bad.size()), Error);
}

TEST(ImageCodec, CorruptPngThrows) {
  const auto bytes = encode_png(synthetic_photo(30, 30, 7));
  std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(bytes.size() * 2 / 3));
  const std::string msg = error_of([&] { decode_png(cut.data(), cut.size()); });
  EXPECT_NE(msg.find("decode_png: corrupt PNG"), std::string::npos) << msg;
  std::vector<uint8_t> crc = bytes;
  crc[40] ^= 0x55;  // inside IDAT: the CRC no longer matches
  EXPECT_THROW(decode_png(crc.data(), crc.size()), Error);
  std::vector<uint8_t> sig = bytes;
  sig[1] = 'Q';
  EXPECT_NE(error_of([&] { decode_png(sig.data(), sig.size()); }).find("not a PNG"), std::string::npos);
  EXPECT_THROW(decode_png_indices(cut.data(), cut.size()), Error);
}

TEST(ImageCodec, BadArguments) {
  Image two(4, 4, 3);
  EXPECT_THROW(encode_jpeg(two, 0), Error);
  EXPECT_THROW(encode_jpeg(Image(), 90), Error);
  EXPECT_THROW(encode_png(Image()), Error);
  EXPECT_THROW(Image(2, 2, 2), Error);
  const auto bytes = encode_jpeg(two, 90);
  JpegDecodeOptions o;
  o.scale_num = 0;
  EXPECT_THROW(decode_jpeg(bytes.data(), bytes.size(), o), Error);
  o.scale_num = 8;
  o.channels = 2;
  EXPECT_THROW(decode_jpeg(bytes.data(), bytes.size(), o), Error);
}

TEST(ImageCodec, SyntheticPhotoLooksLikeAPhoto) {
  // ImageNet-like JPEG sizes (a flat test image would make the decode benchmark meaningless).
  const auto jpegs = synthetic_jpegs(2, 375, 500, 90, 1234);
  for (const auto& j : jpegs) {
    EXPECT_GT(j.size(), 70u * 1024);
    EXPECT_LT(j.size(), 160u * 1024);
  }
  EXPECT_EQ(synthetic_photo(20, 30, 9).data, synthetic_photo(20, 30, 9).data);
  EXPECT_NE(synthetic_photo(20, 30, 9).data, synthetic_photo(20, 30, 10).data);
}

}  // namespace
}  // namespace unirep
