// Image augmentations of the ImageNet recipe (spec 6.4), CPU only, on 8-bit HWC images
// (datasets/image.h), ending in a normalised float32 tensor written into a caller's buffer.
//
// Training: decode -> RandomResizedCrop (bicubic) -> horizontal flip -> RandAugment
// (rand_augment.h) -> normalise -> RandomErasing; then Mixup/CutMix per batch (mixup.h).
// Evaluation: resize the short side to size / crop_pct (bicubic) and center-crop, or warp to a square
// at >= 384. Detection and segmentation pipelines: dense_transforms.h.
//
// Fidelity to the reference libraries (torchvision on PIL images, as timm uses them):
//  * resize() reproduces PIL's Image.resize bit for bit for bilinear and bicubic (a = -0.5): the same
//    separable two-pass resampling (horizontal first, into an 8-bit intermediate), the same antialiasing
//    (the kernel support grows with the reduction factor), the same double-precision coefficients,
//    normalised per output pixel and rounded to 22-bit fixed point, the same rounding and clamping.
//    The tests check values computed with Pillow 13.
//  * RandomResizedCrop draws the crop exactly as torchvision (10 attempts, then the center-crop
//    fallback) and resizes crop-then-resize as torchvision's resized_crop does. Python's round() is
//    round-half-even; so is ours. Random numbers come from our Rng (random.h), not Python's, so the
//    same seed does not give the same crops as timm, only the same distribution.
//  * With `dct_scaling` (random_resized_crop_jpeg), a crop that is at least twice the output size is
//    decoded by libjpeg at 1/2, 1/4 or 1/8 scale (the scales with SIMD IDCTs; 5/8..7/8 are slower than
//    a full decode in libjpeg-turbo 2.1) and resized from a fractional box: the output differs slightly
//    from decode-then-resize (a few grey levels; the tests bound it). At 224 from 500x375 ImageNet-size
//    images a crop is never that large, so there this changes nothing; it pays off on large photos.
//    Only the rows and iMCU columns covering the crop are decoded (bit-identical to a full decode inside
//    the crop; tested).
#pragma once
#include <cstdint>
#include <vector>

#include "datasets/image.h"
#include "datasets/mixup.h"
#include "datasets/rand_augment.h"
#include "datasets/random.h"

namespace unirep {

// ------------------------------------------------------------------------------ geometry

// PIL Image.resize(size, filter): antialiased separable resampling (see the file comment).
// Nearest takes the source pixel under each output pixel centre, as PIL does (PIL steps through the
// image in fixed point and can pick the neighbour where a centre falls exactly on a pixel edge).
Image resize(const Image& src, int64_t out_height, int64_t out_width,
             Interpolation interpolation = Interpolation::Bicubic);
// PIL Image.resize(size, filter, box=(x0, y0, x1, y1)): resamples the box (fractional, source pixel
// units) of `src` to the output size; the kernels may read pixels outside the box (inside the image).
Image resize_box(const Image& src, int64_t out_height, int64_t out_width, Interpolation interpolation, double x0,
                 double y0, double x1, double y1);

// Crops [top, top + height) x [left, left + width); parts outside the image are filled with `fill`
// (torchvision's CenterCrop pads with 0 when the image is smaller than the crop).
Image crop(const Image& src, int64_t top, int64_t left, int64_t height, int64_t width, uint8_t fill = 0);
// Mirrors left-right, in place.
void hflip(Image& image);
// Mirrors a single-channel or multi-channel image top-bottom, in place.
void vflip(Image& image);

// ------------------------------------------------------------------ RandomResizedCrop

struct RandomResizedCropConfig {
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  Interpolation interpolation = Interpolation::Bicubic;
};

struct CropBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// torchvision RandomResizedCrop.get_params on an image of height x width: up to 10 draws of an area
// fraction U(scale) and a log-uniform aspect ratio, w = round(sqrt(area * ratio)), h = round(sqrt(area /
// ratio)), accepted if 0 < w <= width and 0 < h <= height, then a uniform position; otherwise a center
// crop of the whole image clamped to the ratio range.
CropBox random_resized_crop_box(int64_t height, int64_t width, const RandomResizedCropConfig& config, Rng& rng);
// Draws the box and returns crop-then-resize to out_height x out_width.
Image random_resized_crop(const Image& src, int64_t out_height, int64_t out_width,
                          const RandomResizedCropConfig& config, Rng& rng);
// The same from JPEG bytes: reads the header, draws the box (the same draws as above, so for a seed the
// same box), decodes only the rows/columns it needs (DCT-scaled when `dct_scaling` allows, see the file
// comment) and resizes. Produces exactly random_resized_crop(decode_jpeg(...)) when no DCT scaling is
// used. Grey and CMYK JPEGs come out RGB; a PNG (sniffed) is decoded whole and cropped the same way.
Image random_resized_crop_jpeg(const uint8_t* data, size_t size, int64_t out_height, int64_t out_width,
                               const RandomResizedCropConfig& config, Rng& rng, bool dct_scaling = true);

// ---------------------------------------------------------------------- normalisation

enum class Layout { CHW, HWC };

// out = (x * scale - mean[c]) / std[c] per channel, in float32 as torchvision computes it
// (ToTensor divides by 255, Normalize subtracts and divides), through a 256-entry table per channel.
struct Normalization {
  float mean[3] = {0.485f, 0.456f, 0.406f};
  float std[3] = {0.229f, 0.224f, 0.225f};
  bool divide_by_255 = true;  // ToTensor; false for mmdet/mmseg (mean/std in 0..255 units)
  static Normalization imagenet() { return {}; }
  // mmdet/mmseg img_norm_cfg: mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375] on 0..255 RGB.
  static Normalization imagenet_255() {
    return {{123.675f, 116.28f, 103.53f}, {58.395f, 57.12f, 57.375f}, false};
  }
};

// Writes the normalised image into out (height * width * channels floats) in the given layout.
// One-channel images use mean[0]/std[0].
void normalize_into(const Image& image, float* out, Layout layout, const Normalization& norm = {});
// The same into a larger out_height x out_width canvas (image at the top-left), the rest set to
// pad_value (mmdet/mmseg pad after normalising, with 0).
void normalize_into_padded(const Image& image, float* out, int64_t out_height, int64_t out_width, Layout layout,
                           const Normalization& norm = {}, float pad_value = 0.f);

// ---------------------------------------------------------------------------- RandomErasing

// timm RandomErasing (Zhong et al.), on a normalised float image.
struct RandomErasingConfig {
  enum class Mode { Const, Rand, Pixel };
  double probability = 0.25;
  double min_area = 0.02, max_area = 1.0 / 3.0;
  double min_aspect = 0.3, max_aspect = 1.0 / 0.3;  // log-uniform
  int min_count = 1, max_count = 1;
  Mode mode = Mode::Pixel;  // Pixel: per-pixel N(0, 1); Rand: one N(0, 1) per channel; Const: 0
};

// With probability `probability`: `count` boxes (uniform in [min_count, max_count]); for each, up to 10
// attempts of an area fraction U(min_area, max_area) / count and a log-uniform aspect ratio,
// h = round(sqrt(area * aspect)), w = round(sqrt(area / aspect)), accepted if w < width and h < height,
// at a uniform position, filled per `mode`. Returns the number of boxes erased.
int random_erasing(float* image, int64_t height, int64_t width, int64_t channels, Layout layout,
                   const RandomErasingConfig& config, Rng& rng);

// ------------------------------------------------------------------------------ pipelines

// The training transform of spec 6.4 for one image.
struct ImageNetTrainConfig {
  int64_t size = 224;
  RandomResizedCropConfig crop;
  double hflip_prob = 0.5;
  bool use_rand_augment = true;
  RandAugmentConfig rand_augment;  // rand-m9-mstd0.5-inc1, fill (124, 116, 104), bicubic
  Normalization norm;
  RandomErasingConfig erasing;     // p 0.25, pixel mode, 1 box
  Layout layout = Layout::HWC;     // the model runs NHWC
  bool dct_scaling = true;         // JPEG input only
};

// Writes size * size * 3 floats into out. The JPEG overload decodes only what the crop needs.
void imagenet_train_transform(const Image& image, const ImageNetTrainConfig& config, Rng& rng, float* out);
void imagenet_train_transform_jpeg(const uint8_t* data, size_t size, const ImageNetTrainConfig& config, Rng& rng,
                                   float* out);
// The uint8 part of the training transform (RandomResizedCrop, flip, RandAugment), before normalising.
Image imagenet_train_augment(const Image& image, const ImageNetTrainConfig& config, Rng& rng);

// Evaluation geometry (upstream datasets.py): size >= 384: resize to size x size (warp, no crop);
// otherwise resize the shorter side to int(size / crop_pct) keeping the aspect ratio (torchvision
// Resize: the longer side becomes int(new_short * long / short)) and center-crop size x size
// (offsets round((H - size) / 2), round((W - size) / 2)).
Image eval_resize_crop(const Image& image, int64_t size, double crop_pct = 224.0 / 256.0,
                       Interpolation interpolation = Interpolation::Bicubic);
void imagenet_eval_transform(const Image& image, int64_t size, float* out, Layout layout = Layout::HWC,
                             double crop_pct = 224.0 / 256.0, const Normalization& norm = {});

}  // namespace unirep
