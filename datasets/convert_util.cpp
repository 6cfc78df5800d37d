// Converter helpers (see datasets/convert_util.h). libjpeg and libpng report errors through
// longjmp: each decode runs in a function whose C++ objects all live in a context struct created
// before setjmp, so no destructor is skipped, and the message is turned into a unirep::Error after.
#include "datasets/convert_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "core/error.h"

namespace unirep::convert {

namespace fs = std::filesystem;

std::vector<uint8_t> read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  UNIREP_CHECK(fd >= 0, "cannot open '", path, "': ", std::strerror(errno));
  std::vector<uint8_t> out;
  std::vector<uint8_t> buf(1 << 16);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw Error(detail::concat("cannot read '", path, "': ", std::strerror(err)));
    }
    if (n == 0) break;
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  ::close(fd);
  return out;
}

namespace {
std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

std::vector<std::string> list_files(const std::string& dir, const std::vector<std::string>& extensions) {
  UNIREP_CHECK(is_directory(dir), "folder '", dir, "' does not exist");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = lower(e.path().extension().string());
    if (std::find(extensions.begin(), extensions.end(), ext) != extensions.end()) {
      out.push_back(e.path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> list_subfolders(const std::string& dir) {
  UNIREP_CHECK(is_directory(dir), "folder '", dir, "' does not exist");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory()) out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t shards_for_split(int64_t shards, int64_t records, int64_t largest) {
  if (largest <= 0 || records <= 0) return 1;
  return std::max<int64_t>(1, (shards * records + largest - 1) / largest);
}

int64_t default_shards(int64_t shards, uint64_t largest_split_bytes) {
  if (shards > 0) return shards;
  const uint64_t target = uint64_t(256) << 20;
  return std::max<int64_t>(1, int64_t((largest_split_bytes + target - 1) / target));
}

int resolve_workers(int workers) {
  if (workers > 0) return workers;
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

// ---- JPEG

namespace {

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {0};
  bool premature_end = false;
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_emit(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
    err->premature_end = true;
    if (!err->message[0]) (*cinfo->err->format_message)(cinfo, err->message);
  }
}

struct JpegContext {
  jpeg_decompress_struct cinfo;
  JpegError err;
  std::vector<uint8_t> row;
  ImageInfo info;
};

// Returns false with ctx.err.message set on failure.
bool jpeg_decode(JpegContext& ctx, const std::vector<uint8_t>& bytes, bool full) {
  ctx.cinfo.err = jpeg_std_error(&ctx.err.mgr);
  ctx.err.mgr.error_exit = jpeg_error_exit;
  ctx.err.mgr.emit_message = jpeg_emit;
  if (setjmp(ctx.err.jump)) {
    jpeg_destroy_decompress(&ctx.cinfo);
    return false;
  }
  jpeg_create_decompress(&ctx.cinfo);
  jpeg_mem_src(&ctx.cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&ctx.cinfo, TRUE);
  ctx.info.height = ctx.cinfo.image_height;
  ctx.info.width = ctx.cinfo.image_width;
  ctx.info.channels = ctx.cinfo.num_components;
  if (full) {
    ctx.cinfo.scale_num = 1;
    ctx.cinfo.scale_denom = 8;
    ctx.cinfo.dct_method = JDCT_IFAST;
    ctx.cinfo.do_fancy_upsampling = FALSE;
    jpeg_start_decompress(&ctx.cinfo);
    ctx.row.resize(size_t(ctx.cinfo.output_width) * size_t(ctx.cinfo.output_components));
    JSAMPROW rows[1] = {ctx.row.data()};
    while (ctx.cinfo.output_scanline < ctx.cinfo.output_height) jpeg_read_scanlines(&ctx.cinfo, rows, 1);
    jpeg_finish_decompress(&ctx.cinfo);
  }
  jpeg_destroy_decompress(&ctx.cinfo);
  if (ctx.err.premature_end) return false;
  return true;
}

// ---- PNG

struct PngContext {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const std::vector<uint8_t>* bytes = nullptr;
  size_t pos = 0;
  char message[256] = {0};
  std::vector<uint8_t> pixels;  // label maps: height * width
  std::vector<uint8_t> row;
  ImageInfo out;
  int color_type = 0, bit_depth = 0;
};

void png_read_mem(png_structp png, png_bytep data, png_size_t length) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (ctx->pos + length > ctx->bytes->size()) png_error(png, "unexpected end of data (truncated file)");
  std::memcpy(data, ctx->bytes->data() + ctx->pos, length);
  ctx->pos += length;
}

void png_on_error(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof ctx->message, "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

// mode 0: header only; 1: decode and discard; 2: decode a label map into ctx.pixels.
bool png_decode(PngContext& ctx, const std::vector<uint8_t>& bytes, int mode) {
  ctx.bytes = &bytes;
  ctx.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
  if (!ctx.png) {
    std::snprintf(ctx.message, sizeof ctx.message, "libpng cannot allocate");
    return false;
  }
  ctx.info = png_create_info_struct(ctx.png);
  if (!ctx.info) {
    png_destroy_read_struct(&ctx.png, nullptr, nullptr);
    std::snprintf(ctx.message, sizeof ctx.message, "libpng cannot allocate");
    return false;
  }
  if (setjmp(png_jmpbuf(ctx.png))) {
    png_destroy_read_struct(&ctx.png, &ctx.info, nullptr);
    return false;
  }
  png_set_read_fn(ctx.png, &ctx, png_read_mem);
  png_read_info(ctx.png, ctx.info);
  ctx.out.width = png_get_image_width(ctx.png, ctx.info);
  ctx.out.height = png_get_image_height(ctx.png, ctx.info);
  ctx.color_type = png_get_color_type(ctx.png, ctx.info);
  ctx.bit_depth = png_get_bit_depth(ctx.png, ctx.info);
  ctx.out.png = true;
  switch (ctx.color_type) {
    case PNG_COLOR_TYPE_GRAY: ctx.out.channels = 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: ctx.out.channels = 2; break;
    case PNG_COLOR_TYPE_RGB: ctx.out.channels = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: ctx.out.channels = 4; break;
    case PNG_COLOR_TYPE_PALETTE:
      ctx.out.channels = png_get_valid(ctx.png, ctx.info, PNG_INFO_tRNS) ? 4 : 3;
      break;
    default: png_error(ctx.png, "unknown colour type");
  }
  if (mode == 2) {
    if (!(ctx.color_type == PNG_COLOR_TYPE_GRAY || ctx.color_type == PNG_COLOR_TYPE_PALETTE) || ctx.bit_depth > 8) {
      png_error(ctx.png, "a label map must be an 8-bit single-channel (grey or palette) PNG");
    }
    png_set_packing(ctx.png);  // 1/2/4-bit values to bytes, unscaled
  }
  if (mode > 0) {
    const int passes = png_set_interlace_handling(ctx.png);
    png_read_update_info(ctx.png, ctx.info);
    const size_t rowbytes = png_get_rowbytes(ctx.png, ctx.info);
    const size_t h = size_t(ctx.out.height);
    if (mode == 2) {
      ctx.pixels.assign(h * rowbytes, 0);
      for (int p = 0; p < passes; ++p) {
        for (size_t y = 0; y < h; ++y) png_read_row(ctx.png, ctx.pixels.data() + y * rowbytes, nullptr);
      }
    } else {
      ctx.row.resize(rowbytes);
      // Interlaced images need the previous pass's rows; decode them in full then.
      if (passes > 1) ctx.row.resize(rowbytes * h);
      for (int p = 0; p < passes; ++p) {
        for (size_t y = 0; y < h; ++y) png_read_row(ctx.png, ctx.row.data() + (passes > 1 ? y * rowbytes : 0), nullptr);
      }
    }
    png_read_end(ctx.png, nullptr);
  }
  png_destroy_read_struct(&ctx.png, &ctx.info, nullptr);
  return true;
}

bool is_png(const std::vector<uint8_t>& b) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return b.size() >= 8 && std::memcmp(b.data(), sig, 8) == 0;
}
bool is_jpeg(const std::vector<uint8_t>& b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }

}  // namespace

ImageInfo probe_image(const std::vector<uint8_t>& bytes, const std::string& name, bool full) {
  if (is_jpeg(bytes)) {
    JpegContext ctx;
    UNIREP_CHECK(jpeg_decode(ctx, bytes, full), "image '", name, "' is not a decodable JPEG: ", ctx.err.message);
    UNIREP_CHECK(ctx.info.height > 0 && ctx.info.width > 0, "image '", name, "' has an empty size");
    return ctx.info;
  }
  if (is_png(bytes)) {
    PngContext ctx;
    UNIREP_CHECK(png_decode(ctx, bytes, full ? 1 : 0), "image '", name, "' is not a decodable PNG: ", ctx.message);
    UNIREP_CHECK(ctx.out.height > 0 && ctx.out.width > 0, "image '", name, "' has an empty size");
    return ctx.out;
  }
  throw Error(detail::concat("image '", name, "' is neither a JPEG nor a PNG (", bytes.size(), " bytes",
                             bytes.empty() ? ", empty" : "", ")"));
}

std::vector<uint8_t> decode_label_png(const std::vector<uint8_t>& bytes, const std::string& name, int64_t& height,
                                      int64_t& width) {
  UNIREP_CHECK(is_png(bytes), "label map '", name, "' is not a PNG");
  PngContext ctx;
  UNIREP_CHECK(png_decode(ctx, bytes, 2), "label map '", name, "' is not a decodable PNG: ", ctx.message);
  height = ctx.out.height;
  width = ctx.out.width;
  return std::move(ctx.pixels);
}

}  // namespace unirep::convert
