// Converters from source datasets to sharded HDF5 datasets (datasets/shards.h), one file each
// (datasets/convert_*.cpp), and `unirep data inspect` (datasets/inspect.cpp).
//
//   fashion-mnist  SRC = folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (Debian's
//                  dataset-fashion-mnist: /usr/share/datasets/fashion-mnist) -> classification,
//                  raw uint8 28x28x1, splits train (60,000) and test (10,000), the 10 class names.
//   imagefolder    SRC/train/<class>/*.{JPEG,jpg,jpeg,png} and SRC/val/<class>/... -> classification,
//                  encoded (the files' bytes as they are), classes = sorted train folder names (same
//                  labels in val; a class may be missing there), splits train and val.
//   coco           SRC/annotations/instances_{train,val}2017.json + SRC/{train,val}2017/*.jpg ->
//                  detection, splits train and val; category ids -> labels 0..C-1 in sorted id order
//                  (mmdet's mapping), boxes xywh -> x1y1x2y2, crowd flags, areas, polygons and RLE
//                  (compressed RLE strings decoded to counts); images sorted by id.
//   ade20k         SRC/images/{training,validation}/*.jpg + SRC/annotations/{training,validation}/*.png
//                  -> segmentation, splits train and val, the 150 ADE20K class names; images paired
//                  with label maps by file stem (a missing label map is an error naming the image).
// Every image is read in full and decoded (JPEG at 1/8 scale, which still decodes every entropy-coded
// block) by `workers` threads; one thread writes. A file that does not decode is an error naming it,
// or, with skip_corrupt, logged, counted and left out. A split is present when its source is.
//
// Shards: `shards` is the shard count of the largest split; each other split gets
// ceil(shards * its records / the largest split's records) so shards hold about equally many records.
// 0 picks a count that makes shards of about 256 MiB of source bytes (fashion-mnist: 4).
#pragma once
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

#include "datasets/shards.h"

namespace unirep {

struct ConvertOptions {
  int64_t shards = 0;
  int workers = 0;            // 0: std::thread::hardware_concurrency()
  bool skip_corrupt = false;
  bool overwrite = false;     // replace a dataset already in DST
  std::ostream* log = nullptr;  // progress and skipped files; nullptr: quiet
};

struct ConvertReport {
  Manifest manifest;
  std::map<std::string, int64_t> skipped;  // per split: source files left out (skip_corrupt)
  double seconds = 0;
};

ConvertReport convert_fashion_mnist(const std::string& src, const std::string& dst, const ConvertOptions& options);
ConvertReport convert_imagefolder(const std::string& src, const std::string& dst, const ConvertOptions& options);
ConvertReport convert_coco(const std::string& src, const std::string& dst, const ConvertOptions& options);
ConvertReport convert_ade20k(const std::string& src, const std::string& dst, const ConvertOptions& options);
// By name: "fashion-mnist", "imagefolder", "coco", "ade20k".
ConvertReport convert_dataset(const std::string& kind, const std::string& src, const std::string& dst,
                              const ConvertOptions& options);

// The class names the converters use.
const std::vector<std::string>& fashion_mnist_classes();
const std::vector<std::string>& ade20k_classes();

// Prints the manifest summary and per-class counts of every split; with `verify`, also checks every
// shard's size and crc32 and reads every record (for encoded images, parses the JPEG/PNG header and
// compares its shape with the stored one), reporting each problem by shard and record. Returns the
// number of problems found (0 without `verify`).
int64_t inspect_dataset(const std::string& dir, bool verify, std::ostream& out);

}  // namespace unirep
