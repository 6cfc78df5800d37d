// Fashion-MNIST IDX files -> raw classification shards (datasets/convert.h). The IDX format: a
// big-endian header (magic 0x00000803 for images: count, rows, cols; 0x00000801 for labels: count)
// followed by uint8 pixels/labels. The files may be gzip'ed (Debian ships .gz; zlib's gzread also
// reads plain files), and are validated in full: magics, counts, exact lengths, labels 0..9.
#include <chrono>
#include <cstring>
#include <filesystem>
#include <ostream>

#include <zlib.h>

#include "core/error.h"
#include "datasets/convert.h"
#include "datasets/convert_util.h"

namespace unirep {

namespace fs = std::filesystem;

const std::vector<std::string>& fashion_mnist_classes() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return names;
}

namespace {

// The decompressed contents of `path` (.gz or plain).
std::vector<uint8_t> gunzip_file(const std::string& path) {
  gzFile g = gzopen(path.c_str(), "rb");
  UNIREP_CHECK(g, "fashion-mnist: cannot open '", path, "'");
  gzbuffer(g, 1 << 20);
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    int n = gzread(g, buf.data(), unsigned(buf.size()));
    if (n < 0) {
      int errnum = 0;
      std::string msg = gzerror(g, &errnum);
      gzclose(g);
      throw Error("fashion-mnist: '" + path + "' is not a readable gzip file: " + msg);
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  int errnum = 0;
  const char* msg = gzerror(g, &errnum);
  std::string message = msg ? msg : "";
  gzclose(g);
  UNIREP_CHECK(errnum == Z_OK || errnum == Z_STREAM_END, "fashion-mnist: '", path,
               "' is a damaged gzip file: ", message);
  return out;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string find_idx(const std::string& src, const std::string& stem) {
  for (const std::string& name : {stem + ".gz", stem}) {
    const std::string path = (fs::path(src) / name).string();
    if (fs::exists(path)) return path;
  }
  throw Error("fashion-mnist: '" + src + "' has no " + stem + ".gz (nor " + stem +
              "); expected the IDX files of Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist)");
}

struct IdxSplit {
  std::vector<uint8_t> images;  // with the 16-byte header
  std::vector<uint8_t> labels;  // with the 8-byte header
  int64_t count = 0, rows = 0, cols = 0;
};

IdxSplit load_split(const std::string& src, const std::string& prefix) {
  IdxSplit s;
  const std::string ipath = find_idx(src, prefix + "-images-idx3-ubyte");
  const std::string lpath = find_idx(src, prefix + "-labels-idx1-ubyte");
  s.images = gunzip_file(ipath);
  s.labels = gunzip_file(lpath);
  UNIREP_CHECK(s.images.size() >= 16 && be32(s.images.data()) == 0x803, "fashion-mnist: '", ipath,
               "' is not an IDX image file (magic ", s.images.size() >= 4 ? be32(s.images.data()) : 0,
               ", expected 2051)");
  UNIREP_CHECK(s.labels.size() >= 8 && be32(s.labels.data()) == 0x801, "fashion-mnist: '", lpath,
               "' is not an IDX label file (magic ", s.labels.size() >= 4 ? be32(s.labels.data()) : 0,
               ", expected 2049)");
  s.count = be32(s.images.data() + 4);
  s.rows = be32(s.images.data() + 8);
  s.cols = be32(s.images.data() + 12);
  const int64_t nlabels = be32(s.labels.data() + 4);
  UNIREP_CHECK(s.rows > 0 && s.cols > 0 && s.rows <= 4096 && s.cols <= 4096, "fashion-mnist: '", ipath,
               "' has images of ", s.rows, "x", s.cols);
  UNIREP_CHECK(nlabels == s.count, "fashion-mnist: '", ipath, "' has ", s.count, " images but '", lpath, "' has ",
               nlabels, " labels");
  UNIREP_CHECK(int64_t(s.images.size()) == 16 + s.count * s.rows * s.cols, "fashion-mnist: '", ipath, "' holds ",
               s.images.size(), " bytes, expected ", 16 + s.count * s.rows * s.cols, " for ", s.count, " images of ",
               s.rows, "x", s.cols, " (truncated?)");
  UNIREP_CHECK(int64_t(s.labels.size()) == 8 + s.count, "fashion-mnist: '", lpath, "' holds ", s.labels.size(),
               " bytes, expected ", 8 + s.count, " (truncated?)");
  for (int64_t i = 0; i < s.count; ++i) {
    UNIREP_CHECK(s.labels[size_t(8 + i)] < 10, "fashion-mnist: '", lpath, "' record ", i, ": label ",
                 int(s.labels[size_t(8 + i)]), " out of range [0, 10)");
  }
  return s;
}

}  // namespace

ConvertReport convert_fashion_mnist(const std::string& src, const std::string& dst, const ConvertOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  UNIREP_CHECK(convert::is_directory(src), "fashion-mnist: source folder '", src, "' does not exist");
  const std::pair<std::string, std::string> splits[] = {{"train", "train"}, {"test", "t10k"}};
  std::vector<IdxSplit> data;
  for (const auto& [split, prefix] : splits) data.push_back(load_split(src, prefix));
  UNIREP_CHECK(data[0].rows == data[1].rows && data[0].cols == data[1].cols, "fashion-mnist: train images are ",
               data[0].rows, "x", data[0].cols, " but test images are ", data[1].rows, "x", data[1].cols);

  DatasetSpec spec;
  spec.kind = DatasetKind::Classification;
  spec.encoded = false;
  spec.height = data[0].rows;
  spec.width = data[0].cols;
  spec.channels = 1;
  spec.classes = fashion_mnist_classes();
  spec.source = "fashion-mnist " + src;
  ShardWriter writer(dst, spec, options.overwrite);
  const int64_t shards = options.shards > 0 ? options.shards : 4;
  const int64_t largest = std::max(data[0].count, data[1].count);
  ConvertReport report;
  for (size_t k = 0; k < 2; ++k) {
    const IdxSplit& s = data[k];
    const std::string& split = splits[k].first;
    writer.begin_split(split, s.count, convert::shards_for_split(shards, s.count, largest));
    const int64_t pixels = s.rows * s.cols;
    ClassificationRecord r;
    r.height = s.rows;
    r.width = s.cols;
    r.channels = 1;
    r.encoded = false;
    for (int64_t i = 0; i < s.count; ++i) {
      const uint8_t* p = s.images.data() + 16 + i * pixels;
      r.image.assign(p, p + pixels);
      r.label = s.labels[size_t(8 + i)];
      writer.add(r);
    }
    writer.end_split();
    report.skipped[split] = 0;
    if (options.log) *options.log << "[data] " << split << ": " << s.count << " images\n";
  }
  report.manifest = writer.finish();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace unirep
