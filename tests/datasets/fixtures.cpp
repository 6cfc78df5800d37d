// Test inputs for the dataset tests (see fixtures.h).
#include "tests/datasets/fixtures.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

namespace unirep::testing_data {

namespace fs = std::filesystem;

TempDir::TempDir(const std::string& tag) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "unirep_ds_" + std::to_string(::getpid()) + "_" + (info ? info->name() : "x") + tag;
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  path_ = fs::temp_directory_path() / name;
  fs::remove_all(path_);
  fs::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::string> TempDir::entries() const {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(path_)) out.push_back(fs::relative(e.path(), path_).string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> test_pixels(int width, int height, int channels, uint32_t seed) {
  std::vector<uint8_t> p(size_t(width) * size_t(height) * size_t(channels));
  uint32_t s = seed * 2654435761u + 12345u;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        s = s * 1664525u + 1013904223u;
        const int v = (x * 255 / std::max(1, width - 1) + y * 128 / std::max(1, height - 1) + c * 60 +
                       ((x / 8 + y / 8) % 2) * 40 + int(s >> 28)) %
                      256;
        p[(size_t(y) * size_t(width) + size_t(x)) * size_t(channels) + size_t(c)] = uint8_t(v);
      }
    }
  }
  return p;
}

std::vector<uint8_t> encode_jpeg(const std::vector<uint8_t>& pixels, int width, int height, int channels, int quality) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);  // errors exit: fine for test inputs made here
  jpeg_create_compress(&cinfo);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buf, &size);
  cinfo.image_width = JDIMENSION(width);
  cinfo.image_height = JDIMENSION(height);
  cinfo.input_components = channels;
  cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(pixels.data()) + size_t(cinfo.next_scanline) * size_t(width) * size_t(channels);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  std::vector<uint8_t> out(buf, buf + size);
  jpeg_destroy_compress(&cinfo);
  std::free(buf);
  return out;
}

namespace {
void png_write_vec(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}
void png_flush_noop(png_structp) {}
}  // namespace

std::vector<uint8_t> encode_png(const std::vector<uint8_t>& pixels, int width, int height, int channels) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("encode_png failed");
  }
  png_set_write_fn(png, &out, png_write_vec, png_flush_noop);
  png_set_IHDR(png, info, png_uint_32(width), png_uint_32(height), 8,
               channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) {
    png_write_row(png, const_cast<uint8_t*>(pixels.data()) + size_t(y) * size_t(width) * size_t(channels));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile g = gzopen(path.c_str(), "wb6");
  if (!g) throw std::runtime_error("cannot gzopen " + path);
  if (!bytes.empty() && gzwrite(g, bytes.data(), unsigned(bytes.size())) != int(bytes.size())) {
    gzclose(g);
    throw std::runtime_error("gzwrite failed for " + path);
  }
  gzclose(g);
}

namespace {
void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(uint8_t(x >> s));
}
}  // namespace

FakeIdx write_fake_fashion_mnist(const std::string& dir, int train, int test, int rows, int cols) {
  FakeIdx f;
  fs::create_directories(dir);
  for (int split = 0; split < 2; ++split) {
    const int n = split == 0 ? train : test;
    std::vector<uint8_t> images, labels;
    put_be32(images, 0x803);
    put_be32(images, uint32_t(n));
    put_be32(images, uint32_t(rows));
    put_be32(images, uint32_t(cols));
    put_be32(labels, 0x801);
    put_be32(labels, uint32_t(n));
    std::vector<uint8_t> pix, lab;
    for (int i = 0; i < n; ++i) {
      const std::vector<uint8_t> p = test_pixels(cols, rows, 1, uint32_t(1000 * split + i));
      pix.insert(pix.end(), p.begin(), p.end());
      lab.push_back(uint8_t((i * 7 + split) % 10));
    }
    images.insert(images.end(), pix.begin(), pix.end());
    labels.insert(labels.end(), lab.begin(), lab.end());
    const std::string prefix = split == 0 ? "train" : "t10k";
    write_gzip((fs::path(dir) / (prefix + "-images-idx3-ubyte.gz")).string(), images);
    write_gzip((fs::path(dir) / (prefix + "-labels-idx1-ubyte.gz")).string(), labels);
    (split == 0 ? f.train_images : f.test_images) = pix;
    (split == 0 ? f.train_labels : f.test_labels) = lab;
  }
  return f;
}

void flip_byte(const std::string& path, uint64_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(std::streamoff(offset));
  char c = 0;
  f.read(&c, 1);
  c = char(c ^ 0x5a);
  f.seekp(std::streamoff(offset));
  f.write(&c, 1);
  if (!f) throw std::runtime_error("flip_byte failed on " + path);
}

void truncate_file(const std::string& path, uint64_t size) {
  if (::truncate(path.c_str(), off_t(size)) != 0) throw std::runtime_error("truncate failed on " + path);
}

}  // namespace unirep::testing_data
