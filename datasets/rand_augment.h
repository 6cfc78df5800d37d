// RandAugment (Cubuk et al. 2020) as timm implements it, for `rand-m9-mstd0.5-inc1` (spec 6.4).
//
// Per image: `num_ops` (2) ops drawn uniformly WITH replacement from the op set; each is applied with
// probability `prob` (0.5) at a magnitude drawn per application as N(magnitude 9, std 0.5) clipped to
// [0, magnitude_max 10]. The 'inc1' op set is timm's "increasing" set, in which a larger magnitude is
// always a stronger change. Magnitude m (0..10) maps to the op's argument as follows (timm's
// *_level_to_arg functions, "+-" = sign flipped with probability 0.5):
//
//   AutoContrast, Equalize, Invert   no argument
//   Rotate                           +-30 * m / 10 degrees (counter-clockwise, about the centre)
//   PosterizeIncreasing              keep 4 - int(4 * m / 10) bits (4 .. 0)
//   SolarizeIncreasing               threshold 256 - int(256 * m / 10) (256 .. 0): x >= t -> 255 - x
//   SolarizeAdd                      add int(110 * m / 10) to pixels below 128 (clamped at 255)
//   Color/Contrast/Brightness/SharpnessIncreasing
//                                    factor max(0.1, 1 +- 0.9 * m / 10) (0.1 .. 1.9)
//   ShearX, ShearY                   +-0.3 * m / 10 (input x = x + f * y, resp. y = y + f * x)
//   TranslateXRel, TranslateYRel     +-0.45 * m / 10 of the width (height), in pixels, fractional
//
// The pixel operations follow PIL 13, which timm calls (all bit-exact, checked against Pillow):
//   * Rotate/Shear/Translate = Image.transform(AFFINE) / Image.rotate: the output pixel centre (x+.5,
//     y+.5) maps through the affine matrix; a source point outside the image gives the fill colour
//     (timm: the mean pixel (124, 116, 104)); inside, PIL's *transform* bicubic is the a = -1 cubic
//     convolution (not the a = -0.5 of resize) with clamped neighbours, truncated to 8 bits; bilinear
//     is truncated too. Nearest uses floor() (PIL's nearest affine path steps in fixed point and can
//     differ by a pixel at a few places). Rotation by a multiple of 90 degrees about the centre of a
//     square image (and 180 of any) is an exact transpose, as in PIL.
//   * Color/Contrast/Brightness/Sharpness = ImageEnhance: blend(degenerate, image, f) = degenerate +
//     f * (image - degenerate) in float32, truncated (clamped when f > 1). Degenerates: the luma
//     L = (19595 R + 38470 G + 7471 B + 32768) >> 16 as grey RGB (Color); a flat image of
//     int(mean(L) + 0.5) (Contrast); black (Brightness); the 3x3 SMOOTH filter [1 1 1; 1 5 1; 1 1 1]
//     / 13, rounded, border pixels unfiltered (Sharpness).
//   * AutoContrast: per channel, lo..hi (the extreme values present) stretched to 0..255 with the LUT
//     int(x * 255 / (hi - lo) - lo * 255 / (hi - lo)), identity if hi <= lo.
//   * Equalize: per channel LUT as PIL 13 (step = (n - count of the last present value) // 255,
//     lut[i] = (step // 2 + sum of counts below i) // step; identity if step is 0 or one value only).
//     Older Pillow releases divided by 256, which maps the top of the range slightly lower.
//   * Posterize: x & ~(2^(8 - bits) - 1); bits >= 8 is the identity. Invert: 255 - x.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "datasets/image.h"
#include "datasets/random.h"

namespace unirep {

enum class AugmentOp {
  AutoContrast,
  Equalize,
  Invert,
  Rotate,
  PosterizeIncreasing,
  SolarizeIncreasing,
  SolarizeAdd,
  ColorIncreasing,
  ContrastIncreasing,
  BrightnessIncreasing,
  SharpnessIncreasing,
  ShearX,
  ShearY,
  TranslateXRel,
  TranslateYRel,
};

const char* augment_op_name(AugmentOp op);

// The 15 ops of timm's _RAND_INCREASING_TRANSFORMS ('inc1'), in timm's order.
std::vector<AugmentOp> rand_augment_increasing_ops();

struct RandAugmentConfig {
  int num_ops = 2;                 // n
  double magnitude = 9.0;          // m
  double magnitude_std = 0.5;      // mstd (0: fixed; infinity: uniform in [0, m])
  double magnitude_max = 10.0;     // mmax (timm's default upper bound _LEVEL_DENOM)
  double prob = 0.5;               // per-op application probability
  std::vector<AugmentOp> ops = rand_augment_increasing_ops();
  std::array<uint8_t, 3> fill = {124, 116, 104};  // round(255 * ImageNet mean)
  Interpolation interpolation = Interpolation::Bicubic;
  double translate_pct = 0.45;
};

// Parses a timm config string "rand-m9-mstd0.5-inc1" (keys m, n, mstd, mmax, p, inc; 'inc0' selects
// timm's non-increasing op set, which is not implemented and throws). `fill`/`interpolation` keep their
// defaults.
RandAugmentConfig parse_rand_augment(const std::string& spec);

// The op's argument for magnitude m (see the table above); draws the sign where the op has one.
double augment_op_argument(AugmentOp op, double magnitude, const RandAugmentConfig& config, Rng& rng);
// Applies one op with an argument in the units of the table (degrees, bits, threshold, factor, ...).
void apply_augment_op(Image& image, AugmentOp op, double argument, const RandAugmentConfig& config = {});
// The full RandAugment of one image (in place).
void rand_augment(Image& image, const RandAugmentConfig& config, Rng& rng);

// ---- the pixel operations (RGB or one channel, in place)
void auto_contrast(Image& image);
void equalize(Image& image);
void invert(Image& image);
void posterize(Image& image, int bits);
void solarize(Image& image, int threshold);
void solarize_add(Image& image, int add, int threshold = 128);
void enhance_color(Image& image, double factor);
void enhance_contrast(Image& image, double factor);
void enhance_brightness(Image& image, double factor);
void enhance_sharpness(Image& image, double factor);
// PIL Image.transform(size, AFFINE, (a, b, c, d, e, f)): output (x, y) samples the input at
// (a x' + b y' + c, d x' + e y' + f) with x' = x + 0.5, y' = y + 0.5 (see the file comment).
Image affine_transform(const Image& image, const std::array<double, 6>& matrix, Interpolation interpolation,
                       const std::array<uint8_t, 3>& fill);
// PIL Image.rotate(degrees, resample, fillcolor=fill) without expand.
Image rotate(const Image& image, double degrees, Interpolation interpolation, const std::array<uint8_t, 3>& fill);

}  // namespace unirep
