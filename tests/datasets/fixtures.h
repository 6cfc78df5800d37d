// Test inputs for the dataset tests, all made here: JPEGs (libjpeg's compressor), PNGs (libpng),
// gzip'ed Fashion-MNIST IDX files (zlib), files and temp folders.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace unirep::testing_data {

// A fresh folder under the temp dir named after the running test; removed by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  // Every entry below the folder (relative paths, sorted).
  std::vector<std::string> entries() const;

 private:
  std::filesystem::path path_;
};

// Deterministic pixels: a gradient plus texture plus noise, HWC.
std::vector<uint8_t> test_pixels(int width, int height, int channels, uint32_t seed);
// JPEG bytes of `pixels` (channels 1 or 3).
std::vector<uint8_t> encode_jpeg(const std::vector<uint8_t>& pixels, int width, int height, int channels,
                                 int quality = 90);
// PNG bytes: channels 1 (8-bit grey) or 3 (RGB).
std::vector<uint8_t> encode_png(const std::vector<uint8_t>& pixels, int width, int height, int channels);

void write_file(const std::string& path, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> read_file(const std::string& path);
void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes);

// A Fashion-MNIST-like IDX set in `dir` ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz) with
// `train` and `test` images of rows x cols; returns the images (n * rows * cols each) and labels.
struct FakeIdx {
  std::vector<uint8_t> train_images, train_labels, test_images, test_labels;
};
FakeIdx write_fake_fashion_mnist(const std::string& dir, int train, int test, int rows = 28, int cols = 28);

// Flips one byte of a file in place.
void flip_byte(const std::string& path, uint64_t offset);
// Truncates a file to `size` bytes.
void truncate_file(const std::string& path, uint64_t size);

}  // namespace unirep::testing_data
