// Detection (COCO, spec 7.4) and semantic-segmentation (ADE20K, spec 8.3) training pipelines, as
// mmdet 2.x / mmseg 0.x define them on top of mmcv (whose image ops are OpenCV's).
//
// Detection: RandomFlip(0.5) then, per image, one of two policies chosen uniformly (the DETR/Sparse
// R-CNN "AutoAugment" of the configs): (1) Resize keeping the ratio to a scale drawn from `scales`;
// (2) Resize to a scale drawn from `crop_prescales`, RandomCrop of absolute_range (384, 600) with
// negative crops allowed, Resize to a scale drawn from `scales`. With `detr_policy` off, only (1): the
// plain multi-scale resize. Then normalise and pad to a multiple of 32 (detection_write).
// Segmentation: Resize to img_scale (2048, 512) times a ratio U(0.5, 2.0) keeping the ratio (image
// bilinear, labels nearest), RandomCrop 512 x 512 with cat_max_ratio 0.75, RandomFlip(0.5),
// PhotoMetricDistortion, normalise, pad to 512 x 512 (image 0, labels 255) (segmentation_write).
//
// Fidelity: resize_cv2 follows OpenCV's scalar INTER_LINEAR (11-bit fixed-point weights at half-pixel
// centres, no antialiasing, edge clamping, rounding shift by 22) and INTER_NEAREST (floor(x * scale));
// OpenCV's SIMD paths can round some pixels differently by 1. The HSV conversions of
// PhotoMetricDistortion follow OpenCV's 8-bit RGB<->HSV formulas (H in [0, 180)). Box, polygon and
// label arithmetic follows mmdet/mmseg (float32 boxes; x1' = W - x2 on flips; boxes clipped to the image
// after resizes and crops; crops drop boxes with no area).
#pragma once
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "datasets/transforms.h"

namespace unirep {

// ------------------------------------------------------------------------------ shared geometry

// OpenCV cv2.resize(image, (width, height), interpolation) for Bilinear (INTER_LINEAR) and Nearest.
Image resize_cv2(const Image& src, int64_t out_height, int64_t out_width,
                 Interpolation interpolation = Interpolation::Bilinear);

// mmcv.rescale_size: the size (width, height) of a w x h image rescaled to fit a (long, short) scale
// keeping the ratio: factor = min(long / max(h, w), short / min(h, w)), size int(x * factor + 0.5).
std::pair<int64_t, int64_t> rescale_size(int64_t width, int64_t height, int64_t long_edge, int64_t short_edge);

// Padded size: each side rounded up to a multiple of `divisor`.
inline int64_t pad_to_multiple(int64_t n, int64_t divisor) { return (n + divisor - 1) / divisor * divisor; }

// ------------------------------------------------------------------------------------ detection

struct DetectionAnnotations {
  std::vector<std::array<float, 4>> boxes;  // x1, y1, x2, y2 in pixels
  std::vector<int64_t> labels;              // one per box
  std::vector<uint8_t> crowd;               // one per box (1 = iscrowd, mmdet's gt_bboxes_ignore), may be empty
  // Instance masks as polygons, one list per box (may be empty when masks are not used): each polygon is
  // [x0, y0, x1, y1, ...] in pixels.
  std::vector<std::vector<std::vector<float>>> polygons;
};

struct DetectionSample {
  Image image;
  DetectionAnnotations ann;
  bool flipped = false;
  int64_t original_height = 0, original_width = 0;
};

struct DetectionTrainConfig {
  double flip_prob = 0.5;
  bool detr_policy = true;
  // (long, short) scales, one drawn per resize.
  std::vector<std::pair<int64_t, int64_t>> scales = {{1333, 480}, {1333, 512}, {1333, 544}, {1333, 576},
                                                     {1333, 608}, {1333, 640}, {1333, 672}, {1333, 704},
                                                     {1333, 736}, {1333, 768}, {1333, 800}};
  std::vector<std::pair<int64_t, int64_t>> crop_prescales = {{1333, 400}, {1333, 500}, {1333, 600}};
  int64_t crop_min = 384, crop_max = 600;
  bool allow_negative_crop = true;
  int64_t size_divisor = 32;
};

// Resize keeping the ratio to fit (long_edge, short_edge): image bilinear (OpenCV), boxes scaled by
// (new_w / w, new_h / h) in float32 and clipped to the new image, polygons scaled.
void detection_resize(DetectionSample& sample, int64_t long_edge, int64_t short_edge);
// Horizontal flip of the image, boxes (x1' = W - x2, x2' = W - x1) and polygons (x' = W - x).
void detection_hflip(DetectionSample& sample);
// mmdet RandomCrop(crop_type 'absolute_range'): crop height and width uniform integers in
// [min(lo, H), min(hi, H)] (resp. W), offset uniform; boxes shifted, clipped, those without area
// dropped (with their labels, crowd flags and polygons; polygons are shifted, not clipped, as mmdet).
// Returns false (sample unchanged) when no box survives and !allow_negative_crop.
bool detection_random_crop(DetectionSample& sample, int64_t lo, int64_t hi, bool allow_negative_crop, Rng& rng);

// The training transform (geometry only; detection_write normalises and pads).
DetectionSample detection_train_transform(Image image, DetectionAnnotations ann, const DetectionTrainConfig& config,
                                          Rng& rng);
// Test: resize keeping the ratio to (1333, 800), no flip.
DetectionSample detection_test_transform(Image image, DetectionAnnotations ann, int64_t long_edge = 1333,
                                         int64_t short_edge = 800);
// Normalised float32 image padded (0 after normalising, as mmdet pads) to out_height x out_width.
void detection_write(const DetectionSample& sample, float* out, int64_t out_height, int64_t out_width,
                     Layout layout = Layout::HWC, const Normalization& norm = Normalization::imagenet_255());

// ---------------------------------------------------------------------------------- segmentation

struct SegmentationSample {
  Image image;  // RGB
  Image label;  // one channel, class indices (255 = ignore)
};

// ADE20K's reduce_zero_label: 0 ("other") -> 255, v -> v - 1, 255 stays 255.
void reduce_zero_label(Image& label);

// Resize keeping the ratio to fit (long_edge, short_edge): image bilinear, labels nearest (OpenCV).
void segmentation_resize(SegmentationSample& sample, int64_t long_edge, int64_t short_edge);
// mmseg RandomCrop: a uniform crop_h x crop_w window (smaller where the image is smaller); with
// cat_max_ratio < 1, up to 10 redraws until the crop holds more than one non-ignored class and none
// covers cat_max_ratio or more of its non-ignored pixels (the 11th draw is then taken unchecked, as
// mmseg does).
void segmentation_random_crop(SegmentationSample& sample, int64_t crop_h, int64_t crop_w, double cat_max_ratio,
                              uint8_t ignore_index, Rng& rng);
void segmentation_hflip(SegmentationSample& sample);

struct PhotoMetricConfig {
  int brightness_delta = 32;
  double contrast_lower = 0.5, contrast_upper = 1.5;
  double saturation_lower = 0.5, saturation_upper = 1.5;
  int hue_delta = 18;
};

// mmseg PhotoMetricDistortion on an RGB image: brightness (+U(-32, 32), p 0.5); then contrast
// (x U(0.5, 1.5), p 0.5) either first or last (mode drawn with p 0.5); saturation (S x U(0.5, 1.5) in
// HSV, p 0.5); hue (H + an integer in [-18, 18), mod 180, p 0.5). Each step in float32, clipped to
// [0, 255] and truncated to uint8, as mmseg.
void photo_metric_distortion(Image& image, const PhotoMetricConfig& config, Rng& rng);

// OpenCV's 8-bit RGB <-> HSV (H in [0, 180), S and V in [0, 255]), in place.
void rgb_to_hsv(Image& image);
void hsv_to_rgb(Image& image);

struct SegmentationTrainConfig {
  int64_t scale_long = 2048, scale_short = 512;
  double ratio_min = 0.5, ratio_max = 2.0;
  int64_t crop_h = 512, crop_w = 512;
  double cat_max_ratio = 0.75;
  double flip_prob = 0.5;
  PhotoMetricConfig photometric;
  uint8_t ignore_index = 255;
};

// The training transform (the label already zero-reduced where the dataset needs it).
SegmentationSample segmentation_train_transform(Image image, Image label, const SegmentationTrainConfig& config,
                                                Rng& rng);
// Test: resize keeping the ratio to (long, short), then resize the image (bilinear) to the next multiples
// of `divisor` (mmseg ResizeToMultiple); the label is returned at the ratio-resized size.
SegmentationSample segmentation_test_transform(Image image, Image label, int64_t long_edge = 2048,
                                               int64_t short_edge = 512, int64_t divisor = 32);
// Normalised float32 image and int64 labels, padded to out_height x out_width (image 0 after
// normalising, labels `label_pad`).
void segmentation_write(const SegmentationSample& sample, float* image_out, int64_t* label_out, int64_t out_height,
                        int64_t out_width, Layout layout = Layout::HWC,
                        const Normalization& norm = Normalization::imagenet_255(), int64_t label_pad = 255);

}  // namespace unirep
