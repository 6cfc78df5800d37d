// Sharded HDF5 datasets, format "unirep-shards" version 1: the writer (ShardWriter) and the
// random-access reader (ShardedDataset). datasets/README.md describes the same format with h5py
// examples; this comment is the reference.
//
// ---- The folder
//   DIR/manifest.json          written last, atomically: a folder without it is not a dataset
//   DIR/<split>-NNNNN.h5       the shards of each split, NNNNN = 00000, 00001, ... (5 digits)
// A split's records are numbered 0..count-1 across its shards in order: shard s holds the records
// [first_s, first_s + count_s), first_s = the sum of the earlier shards' counts.
//
// ---- manifest.json (nlohmann-json; keys in this order, unknown keys are ignored by the reader)
//   {"format": "unirep-shards", "version": 1,
//    "kind": "classification" | "detection" | "segmentation",
//    "image_encoding": "raw" | "encoded",
//    "image_shape": {"height": 28, "width": 28, "channels": 1},     raw only: every image's shape
//    "classes": ["T-shirt/top", ...],                               class c has name classes[c]
//    "source": "fashion-mnist /usr/share/datasets/fashion-mnist",   free text, optional
//    "splits": {"train": {"count": 60000,
//                         "class_counts": [6000, ...],              one per class, see below
//                         "shards": [{"file": "train-00000.h5", "count": 15000,
//                                     "bytes": 11767432, "crc32": 3052402412}, ...]}, ...}}
//   class_counts: classification = records per class; detection = object instances per class;
//   segmentation = images whose label map contains the class (pixel value c + 1).
//   bytes/crc32: the shard file's size and zlib crc32 (an unsigned 32-bit integer).
//
// ---- A shard (HDF5, written with 1.8 format structures, no timestamps). Every dataset sits at the
// root, contiguous (no chunking, no filters), little-endian; n = the shard's records.
//   image          raw:     uint8 [n, H, W, C] (HWC, row-major)
//                  encoded: variable-length uint8 [n] (H5Tvlen_create(H5T_NATIVE_UINT8)): the JPEG
//                           or PNG file's bytes, as they were
//   image_shape    int32 [n, 3]: height, width, channels of each image (encoded only; channels is
//                  the file's: 1 gray, 3 colour, 4 CMYK/RGBA, 2 gray+alpha)
//   image_id       int64 [n]   optional (the source's id, e.g. COCO image ids)
//   file_name      variable-length UTF-8 string [n]   optional (path relative to the source)
//   classification:
//     label        int64 [n], 0 <= label < classes
//   detection (K = objects in the shard, P = polygons, C = polygon coordinates, R = RLE counts):
//     object_offset          int64 [n + 1]: record i owns objects [object_offset[i], object_offset[i+1])
//     boxes                  float32 [K, 4]: x1, y1, x2, y2 in pixels (COCO's x, y, x + w, y + h)
//     labels                 int64 [K], 0 <= label < classes
//     iscrowd                uint8 [K] (0/1)
//     area                   float32 [K] (COCO's segment area)
//     mask_type              uint8 [K]: 0 none, 1 polygons, 2 RLE
//     polygon_offset         int64 [K + 1]: object j owns polygons [polygon_offset[j], polygon_offset[j+1])
//     polygon_coord_offset   int64 [P + 1]: polygon p is polygon_coords[polygon_coord_offset[p] ...
//                            polygon_coord_offset[p+1]) = x0, y0, x1, y1, ... (pixels)
//     polygon_coords         float32 [C]
//     rle_offset             int64 [K + 1]: object j's RLE counts are rle_counts[rle_offset[j] ...
//                            rle_offset[j+1]); empty for non-RLE objects
//     rle_counts             uint32 [R]: uncompressed COCO RLE (column-major runs, zeros first; COCO's
//                            compressed string form is decoded by the converter); sum = height * width
//     rle_size               int64 [K, 2]: the RLE's height, width (0, 0 for non-RLE objects)
//   segmentation:
//     label_png    variable-length uint8 [n]: the label map's PNG bytes (8-bit, one channel; value 0 =
//                  "other", value c + 1 = class c, as ADE20K ships them; reduce_zero_label is the
//                  pipeline's business)
//   Root attributes (strings): format = "unirep-shards", version = "1", kind, split, shard (its
//   number), first_index, count.
// Flat arrays plus offsets (not one vlen dataset per field) keep every fixed-type field contiguous,
// so the reader finds it at one file offset.
//
// ---- Reading: ShardedDataset
//   ShardedDataset ds;  ds.open(dir, "train", /*verify_checksums=*/false, /*skip_corrupt=*/false);
//   ds.size();  ds.read(i) -> ClassificationRecord;  ds.read_detection(i);  ds.read_segmentation(i)
// open() checks the manifest (format, version, keys), that every shard exists with the manifest's
// size (a truncated shard fails here), optionally each shard's crc32 (reads every byte), opens every
// shard once (HDF5 file + a POSIX fd), reads the small per-record arrays (labels, shapes, ids,
// offsets, boxes) into memory and validates them (offsets monotone and in range, labels < classes).
//
// Threads: read() is const and may be called from any number of threads at once. The read path
// keeps HDF5's global lock (core/hdf5_util.h) off the hot path: at open, every fixed-type payload
// (raw images, polygon coordinates, RLE counts) is resolved to its file offset (H5Dget_offset of the
// contiguous dataset), and the variable-length payloads (encoded images, label PNGs) to the file
// offset of each record's global-heap object (the dataset's 16-byte heap references are read once
// and parsed: length u32, collection address u64, object index u32; each referenced heap collection's
// object headers are walked once). read() then is one pread() per payload (preadv of the heap
// object's header + data, the header checked against the expected index and size): no HDF5 call,
// no lock. Fallback: datasets laid out differently (chunked, filtered, a file with a user block or
// 4-byte addresses, written by another tool), heap collections that do not parse, or a spot check
// at open (records 0, n/2, n-1 against the library) that disagrees, are read through HDF5 (one
// hyperslab H5Dread under the mutex); fast_path() tells whether a field is read without HDF5
// everywhere. file_name reads always go through HDF5. UNIREP_SHARDS_FAST_PATH=0 in the environment
// forces the HDF5 path (for measurements).
//
// Errors are unirep::Error naming the dataset folder, the split, the shard file and the record:
// missing folder/manifest/shard, unknown format version or missing manifest keys, size or crc32
// mismatch, a shard HDF5 cannot open (truncated/corrupt), inconsistent arrays, a label out of range,
// a record index out of range. With skip_corrupt, a bad shard is logged at open and its records,
// and any record that fails to read, are skipped: try_read*() return nullopt, log once per record to
// stderr and count it (skipped()). read*() always throw. A record index out of range always throws.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace unirep {

enum class DatasetKind { Classification, Detection, Segmentation };
const char* kind_name(DatasetKind kind);              // "classification", ...
DatasetKind parse_kind(const std::string& name);      // throws on an unknown name

constexpr int kShardFormatVersion = 1;

// ---- records

struct ClassificationRecord {
  std::vector<uint8_t> image;  // raw: H*W*C bytes (HWC); encoded: the JPEG/PNG file bytes
  int64_t label = 0;
  int64_t height = 0, width = 0, channels = 0;
  bool encoded = false;
};

struct InstanceMask {
  enum class Type : uint8_t { None = 0, Polygons = 1, RLE = 2 };
  Type type = Type::None;
  std::vector<std::vector<float>> polygons;  // Polygons: each x0, y0, x1, y1, ... (pixels)
  std::vector<uint32_t> rle_counts;          // RLE: uncompressed COCO counts, column-major, zeros first
  int64_t rle_height = 0, rle_width = 0;
};

struct DetectionRecord {
  std::vector<uint8_t> image;
  int64_t height = 0, width = 0, channels = 0;
  bool encoded = false;
  int64_t image_id = -1;
  std::string file_name;
  std::vector<float> boxes;          // [k * 4]: x1, y1, x2, y2 (pixels)
  std::vector<int64_t> labels;       // [k]
  std::vector<uint8_t> iscrowd;      // [k]
  std::vector<float> areas;          // [k]
  std::vector<InstanceMask> masks;   // [k]
  int64_t num_objects() const { return int64_t(labels.size()); }
};

struct SegmentationRecord {
  std::vector<uint8_t> image;
  int64_t height = 0, width = 0, channels = 0;
  bool encoded = false;
  std::vector<uint8_t> label_png;  // PNG bytes of the 8-bit label map (0 = other, c + 1 = class c)
  int64_t image_id = -1;
  std::string file_name;
};

// Optional per-record metadata for ShardWriter::add(ClassificationRecord).
struct RecordMeta {
  int64_t image_id = -1;   // -1: none
  std::string file_name;   // "": none
};

// ---- the manifest

struct ShardInfo {
  std::string file;  // name inside the dataset folder
  int64_t count = 0;
  int64_t bytes = 0;
  uint32_t crc32 = 0;
};

struct SplitInfo {
  int64_t count = 0;
  std::vector<int64_t> class_counts;
  std::vector<ShardInfo> shards;
};

struct Manifest {
  DatasetKind kind = DatasetKind::Classification;
  bool encoded = false;                      // image_encoding "encoded" (JPEG/PNG) or "raw"
  int64_t height = 0, width = 0, channels = 0;  // raw only
  std::vector<std::string> classes;
  std::string source;
  std::map<std::string, SplitInfo> splits;

  std::string to_json() const;
  // `where` names the file in error messages.
  static Manifest from_json(const std::string& text, const std::string& where);
  // Reads DIR/manifest.json (errors name the folder and the file).
  static Manifest load(const std::string& dir);
};

// What a dataset holds, fixed when writing starts.
struct DatasetSpec {
  DatasetKind kind = DatasetKind::Classification;
  bool encoded = false;
  int64_t height = 0, width = 0, channels = 0;  // raw only
  std::vector<std::string> classes;
  std::string source;
};

// zlib crc32 of a whole file (errors name it).
uint32_t file_crc32(const std::string& path);

// "<split>-NNNNN.h5"
std::string shard_file_name(const std::string& split, int64_t shard);

// ---- writing

// Streams records into the shards of one split after another. Each split's records are cut into
// `num_shards` shards of near-equal count by the expected total given to begin_split (shard s gets
// records [s*n/N, (s+1)*n/N)); fewer records than expected leave the last shards shorter (empty
// ones are not written). One shard's records are held in memory and written when it is full, to
// "<name>.tmp.<pid>.<k>"; finish() renames every shard to its final name and then writes the
// manifest (atomically, last). Without finish() (an exception, a crash) no manifest is written and
// the destructor removes the temp files: a half-written dataset never looks complete.
// Not thread-safe: one writer thread.
class ShardWriter {
 public:
  // `dir` is created when missing. A folder that already holds a manifest is refused unless
  // `overwrite`; then that manifest is removed at once (before anything else is written).
  ShardWriter(std::string dir, DatasetSpec spec, bool overwrite = false);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void begin_split(const std::string& split, int64_t expected_records, int64_t num_shards);
  // Validates the record against the spec (kind, raw size, label range, array lengths) and appends it.
  void add(const ClassificationRecord& record, const RecordMeta& meta = {});
  void add(const DetectionRecord& record);
  // `classes_present`: the classes whose pixels occur in the label map (for the manifest's counts).
  void add(const SegmentationRecord& record, const std::vector<int64_t>& classes_present = {});
  void end_split();
  // Renames the shards into place and writes manifest.json; returns the manifest.
  Manifest finish();

  const std::string& dir() const { return dir_; }
  int64_t records_in_split() const;

 private:
  struct Shard;
  void check_open_split(const char* op) const;
  void flush_shard();
  void prepare_add(const char* op, int64_t height, int64_t width, int64_t channels, size_t image_bytes,
                   bool encoded);

  std::string dir_;
  DatasetSpec spec_;
  Manifest manifest_;
  std::string split_;
  bool in_split_ = false;
  bool finished_ = false;
  int64_t expected_ = 0, num_shards_ = 0, added_ = 0;
  std::unique_ptr<Shard> shard_;  // the shard being filled
  std::vector<std::pair<std::string, std::string>> temps_;  // (temp path, final path), not yet renamed
};

// ---- reading

// Where a record lives.
struct RecordLocation {
  int64_t shard = 0;  // number within the split
  int64_t local = 0;  // index within the shard
  std::string path;   // the shard file
};

class ShardedDataset {
 public:
  ShardedDataset();
  ShardedDataset(const std::string& dir, const std::string& split, bool verify_checksums = false,
                 bool skip_corrupt = false);
  ~ShardedDataset();
  ShardedDataset(ShardedDataset&&) noexcept;
  ShardedDataset& operator=(ShardedDataset&&) noexcept;

  // Opens `split` of the dataset in `dir` (closing any dataset open before).
  void open(const std::string& dir, const std::string& split, bool verify_checksums = false,
            bool skip_corrupt = false);
  bool is_open() const;

  int64_t size() const;
  const Manifest& manifest() const;
  DatasetKind kind() const;
  bool encoded() const;
  const std::vector<std::string>& class_names() const;
  int64_t num_classes() const;
  const std::string& dir() const;
  const std::string& split() const;
  int64_t num_shards() const;

  // Classification. read() throws on any problem; try_read() returns nullopt for a corrupt record
  // when skip_corrupt (logged once, counted), and throws otherwise. label() is served from memory.
  ClassificationRecord read(int64_t index) const;
  std::optional<ClassificationRecord> try_read(int64_t index) const;
  int64_t label(int64_t index) const;
  // Detection and segmentation, same contract.
  DetectionRecord read_detection(int64_t index) const;
  std::optional<DetectionRecord> try_read_detection(int64_t index) const;
  SegmentationRecord read_segmentation(int64_t index) const;
  std::optional<SegmentationRecord> try_read_segmentation(int64_t index) const;

  // Metadata: image_id (-1 when absent) and shape from memory, file_name ("" when absent) via HDF5.
  int64_t image_id(int64_t index) const;
  std::string file_name(int64_t index) const;
  RecordLocation locate(int64_t index) const;

  // "" when shard `shard` opened fine, else why it is skipped (only with skip_corrupt).
  std::string shard_problem(int64_t shard) const;

  bool skip_corrupt() const;
  // Distinct records skipped so far (bad shards' records count as they are asked for).
  int64_t skipped() const;
  // For the loader: records a record it could not use (e.g. an undecodable JPEG) under the same
  // policy: with skip_corrupt, logs once per record and counts it; otherwise throws an Error naming
  // the shard and the record.
  void note_corrupt(int64_t index, const std::string& reason) const;
  // Whether the `field` payload ("image", "label_png", "polygon_coords", "rle_counts") of every
  // shard is read with pread() only (no HDF5 call, no lock).
  bool fast_path(const std::string& field = "image") const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace unirep
