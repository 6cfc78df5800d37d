// Internal to datasets/shards*.cpp: the names of a shard's datasets and attributes (the format is
// documented in datasets/shards.h) and the HDF5 check helper.
#pragma once
#include <string>

#include "core/error.h"
#include "core/hdf5_util.h"

namespace unirep::shards {

constexpr const char* kFormat = "unirep-shards";
constexpr const char* kManifest = "manifest.json";

// datasets
constexpr const char* kImage = "image";
constexpr const char* kImageShape = "image_shape";
constexpr const char* kImageId = "image_id";
constexpr const char* kFileName = "file_name";
constexpr const char* kLabel = "label";
constexpr const char* kObjectOffset = "object_offset";
constexpr const char* kBoxes = "boxes";
constexpr const char* kLabels = "labels";
constexpr const char* kIsCrowd = "iscrowd";
constexpr const char* kArea = "area";
constexpr const char* kMaskType = "mask_type";
constexpr const char* kPolygonOffset = "polygon_offset";
constexpr const char* kPolygonCoordOffset = "polygon_coord_offset";
constexpr const char* kPolygonCoords = "polygon_coords";
constexpr const char* kRleOffset = "rle_offset";
constexpr const char* kRleCounts = "rle_counts";
constexpr const char* kRleSize = "rle_size";
constexpr const char* kLabelPng = "label_png";

// Checks an HDF5 return value (negative = failure): throws Error(prefix + what + HDF5's detail).
template <class T, class... Args> T h5check(T r, const std::string& prefix, const Args&... what) {
  if (r < 0) throw Error(prefix + detail::concat(what...) + hdf5_error_detail());
  return r;
}

}  // namespace unirep::shards
