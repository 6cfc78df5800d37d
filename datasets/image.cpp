// JPEG (libjpeg API) and PNG (libpng) codecs. See image.h.
//
// Both libraries report fatal errors through a callback that must not return; we longjmp back to the
// decode function, which then destroys the library state and throws unirep::Error. To keep the
// setjmp/longjmp pair well defined in C++, every object with a destructor is created before setjmp
// and the code between setjmp and the library calls creates none (only PODs and pointers), and what
// the error path reads afterwards lives in the error-manager struct.
#include "datasets/image.h"

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "core/error.h"

namespace unirep {

Image::Image(int64_t h, int64_t w, int64_t c, uint8_t fill) : height(h), width(w), channels(c) {
  UNIREP_CHECK(h >= 0 && w >= 0 && (c == 1 || c == 3 || (c == 0 && h * w == 0)),
               "Image: expected a non-negative size and 1 or 3 channels, got ", h, "x", w, "x", c);
  data.assign(size_t(h * w * c), fill);
}

std::string Image::shape_str() const { return detail::concat(height, "x", width, "x", channels); }

namespace {

// ------------------------------------------------------------------------------------------ JPEG

struct JpegErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg hands us a pointer to it
  std::jmp_buf jump;
  bool strict = true;
  char message[JMSG_LENGTH_MAX] = {0};
};

void jpeg_on_error_exit(j_common_ptr cinfo) {
  auto* mgr = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, mgr->message);
  std::longjmp(mgr->jump, 1);
}

// msg_level < 0: a warning (corrupt data that libjpeg would paper over); >= 0: trace messages.
void jpeg_on_emit_message(j_common_ptr cinfo, int msg_level) {
  if (msg_level >= 0) return;
  auto* mgr = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  cinfo->err->num_warnings++;
  if (mgr->strict && cinfo->err->msg_code != JWRN_EXTRANEOUS_DATA) {
    (*cinfo->err->format_message)(cinfo, mgr->message);
    std::longjmp(mgr->jump, 1);
  }
}

void jpeg_on_output_message(j_common_ptr) {}

void install_jpeg_errors(JpegErrorManager& mgr, bool strict) {
  jpeg_std_error(&mgr.pub);
  mgr.pub.error_exit = jpeg_on_error_exit;
  mgr.pub.emit_message = jpeg_on_emit_message;
  mgr.pub.output_message = jpeg_on_output_message;
  mgr.strict = strict;
}

// PIL's CMYK -> RGB (Convert.c cmyk2rgb): R = (255 - C) * (255 - K) / 255 with rounding. Adobe
// (Photoshop) files store the inverted values, which libjpeg passes through, so there the stored
// value already is 255 - C.
inline uint8_t mul_div255(int a, int b) {
  int t = a * b + 128;
  return uint8_t((t + (t >> 8)) >> 8);
}

void cmyk_row_to_rgb(const uint8_t* in, uint8_t* out, int64_t width, bool inverted) {
  for (int64_t x = 0; x < width; ++x) {
    int c = in[4 * x], m = in[4 * x + 1], y = in[4 * x + 2], k = in[4 * x + 3];
    if (!inverted) c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k;
    out[3 * x] = mul_div255(c, k);
    out[3 * x + 1] = mul_div255(m, k);
    out[3 * x + 2] = mul_div255(y, k);
  }
}

// PIL's RGB -> L: (R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16 (ITU-R 601-2 luma, rounded).
inline uint8_t rgb_to_luma(const uint8_t* p) {
  return uint8_t((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

// State that must survive a longjmp lives here, outside the setjmp frame's locals.
struct JpegDecodeJob {
  const uint8_t* data;
  size_t size;
  const JpegDecodeOptions* opt;
  JpegDecoded* out;
  std::vector<uint8_t>* scratch;     // CMYK rows
  std::vector<JSAMPROW>* row_ptrs;
};

// Returns false with mgr.message set on failure. No C++ object is created inside.
bool run_jpeg_decode(jpeg_decompress_struct& cinfo, JpegErrorManager& mgr, JpegDecodeJob& job) {
  if (setjmp(mgr.jump)) return false;
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, job.data, static_cast<unsigned long>(job.size));
  jpeg_read_header(&cinfo, TRUE);
  const JpegDecodeOptions& opt = *job.opt;
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  const bool grey_file = cinfo.num_components == 1;
  const int out_channels = opt.channels == 0 ? (grey_file ? 1 : 3) : opt.channels;
  if (cmyk) {
    cinfo.out_color_space = JCS_CMYK;
  } else if (out_channels == 1) {
    cinfo.out_color_space = JCS_GRAYSCALE;
  } else {
    cinfo.out_color_space = JCS_RGB;
  }
  cinfo.scale_num = static_cast<unsigned>(opt.scale_num);
  cinfo.scale_denom = 8;
  cinfo.dct_method = opt.fast ? JDCT_IFAST : JDCT_ISLOW;
  cinfo.do_fancy_upsampling = opt.fast ? FALSE : TRUE;
  jpeg_start_decompress(&cinfo);

  JpegDecoded& out = *job.out;
  out.full_width = cinfo.output_width;
  out.full_height = cinfo.output_height;
  int64_t y0 = 0, rows = cinfo.output_height;
  bool trim_left = false, trim_right = false;
  if (opt.region_width > 0 && opt.region_height > 0) {
    int64_t x0 = std::min<int64_t>(std::max<int64_t>(opt.region_x, 0), cinfo.output_width - 1);
    int64_t x1 = std::min<int64_t>(opt.region_x + opt.region_width, cinfo.output_width);
    y0 = std::min<int64_t>(std::max<int64_t>(opt.region_y, 0), cinfo.output_height - 1);
    int64_t y1 = std::min<int64_t>(opt.region_y + opt.region_height, cinfo.output_height);
    rows = std::max<int64_t>(y1 - y0, 1);
    if (x0 > 0 || x1 < int64_t(cinfo.output_width)) {
      // libjpeg aligns the left edge down to an iMCU column; its chroma upsampler then treats the cut
      // columns as image edges, so the first and last decoded columns can differ from a full decode.
      // Ask for one column more on each side and drop the outermost decoded columns (below) unless
      // they are the real image edges: what we return is then bit-identical to a full decode.
      int64_t ask0 = x0 > 0 ? x0 - 1 : 0, ask1 = std::min<int64_t>(x1 + 1, cinfo.output_width);
      JDIMENSION xoff = JDIMENSION(ask0), cw = JDIMENSION(ask1 - ask0);
      jpeg_crop_scanline(&cinfo, &xoff, &cw);
      out.x0 = xoff;
      trim_left = xoff > 0;
      trim_right = int64_t(xoff + cw) < out.full_width;
    }
    if (y0 > 0) jpeg_skip_scanlines(&cinfo, JDIMENSION(y0));
  }
  out.y0 = y0;
  Image& img = out.image;
  // The output size is known only now. resize() could throw std::bad_alloc through this frame; out of
  // memory is fatal for the loader anyway.
  img.height = rows;
  img.width = cinfo.output_width;
  img.channels = out_channels;
  img.data.resize(img.numel());
  const int comps = cinfo.output_components;
  const bool direct = !cmyk && comps == out_channels;
  if (!direct) job.scratch->resize(size_t(img.width) * size_t(comps) * 16);
  int64_t done = 0;
  while (done < rows) {
    JSAMPROW ptrs[16];
    int64_t n = std::min<int64_t>(16, rows - done);
    for (int64_t i = 0; i < n; ++i)
      ptrs[i] = direct ? img.row(done + i) : job.scratch->data() + size_t(i * img.width * comps);
    JDIMENSION got = jpeg_read_scanlines(&cinfo, ptrs, JDIMENSION(n));
    if (got == 0) ERREXIT(&cinfo, JERR_INPUT_EOF);
    if (!direct) {
      for (JDIMENSION i = 0; i < got; ++i) {
        const uint8_t* src = ptrs[i];
        uint8_t* dst = img.row(done + i);
        if (out_channels == 3) {
          cmyk_row_to_rgb(src, dst, img.width, cinfo.saw_Adobe_marker);
        } else {
          uint8_t rgb[3];
          for (int64_t x = 0; x < img.width; ++x) {
            cmyk_row_to_rgb(src + 4 * x, rgb, 1, cinfo.saw_Adobe_marker);
            dst[x] = rgb_to_luma(rgb);
          }
        }
      }
    }
    done += got;
  }
  if (rows == int64_t(cinfo.output_height)) {
    jpeg_finish_decompress(&cinfo);
  } else {
    jpeg_abort_decompress(&cinfo);
  }
  const int64_t drop = int64_t(trim_left) + int64_t(trim_right);
  if (drop > 0 && img.width > drop) {
    const size_t c = size_t(img.channels), w = size_t(img.width), nw = size_t(img.width - drop);
    const size_t skip = trim_left ? c : 0;
    for (int64_t y = 0; y < img.height; ++y)
      std::memmove(img.data.data() + size_t(y) * nw * c, img.data.data() + size_t(y) * w * c + skip, nw * c);
    img.width -= drop;
    img.data.resize(img.numel());
    out.x0 += int64_t(trim_left);
  }
  return true;
}

bool run_jpeg_header(jpeg_decompress_struct& cinfo, JpegErrorManager& mgr, const uint8_t* data, size_t size,
                     JpegHeader& h) {
  if (setjmp(mgr.jump)) return false;
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  h.width = cinfo.image_width;
  h.height = cinfo.image_height;
  h.channels = cinfo.num_components;
  h.progressive = cinfo.progressive_mode;
  return true;
}

struct JpegEncodeJob {
  const Image* image;
  int quality;
  bool progressive;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
};

bool run_jpeg_encode(jpeg_compress_struct& cinfo, JpegErrorManager& mgr, JpegEncodeJob& job) {
  if (setjmp(mgr.jump)) return false;
  jpeg_create_compress(&cinfo);
  jpeg_mem_dest(&cinfo, &job.buffer, &job.size);
  const Image& img = *job.image;
  cinfo.image_width = JDIMENSION(img.width);
  cinfo.image_height = JDIMENSION(img.height);
  cinfo.input_components = int(img.channels);
  cinfo.in_color_space = img.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, job.quality, TRUE);
  cinfo.optimize_coding = TRUE;
  if (job.progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(img.row(cinfo.next_scanline));
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  return true;
}

// ------------------------------------------------------------------------------------------- PNG

struct PngReader {
  const uint8_t* data;
  size_t size;
  size_t pos = 0;
};

void png_read_from_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) png_error(png, "unexpected end of data (truncated file)");
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

struct PngErrorState {
  char message[256] = {0};
};

void png_on_error(png_structp png, png_const_charp msg) {
  auto* st = static_cast<PngErrorState*>(png_get_error_ptr(png));
  std::snprintf(st->message, sizeof(st->message), "%s", msg);
  png_longjmp(png, 1);
}

void png_on_warning(png_structp, png_const_charp) {}

struct PngDecodeJob {
  PngReader reader;
  int want;        // 1, 3 or 0 (as stored); -1 = raw indices
  Image* out;
  std::vector<png_bytep>* rows;
  std::vector<uint8_t>* scratch;  // RGB rows when converting to grey
  bool bad_format = false;
  char format_message[160] = {0};
};

bool run_png_decode(png_structp png, png_infop info, PngDecodeJob& job) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, &job.reader, png_read_from_memory);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int bit_depth = png_get_bit_depth(png, info), color = png_get_color_type(png, info);
  if (job.want < 0) {
    // Raw indices: palette or grey, at most 8 bits, one value per byte.
    if (!((color == PNG_COLOR_TYPE_PALETTE || color == PNG_COLOR_TYPE_GRAY) && bit_depth <= 8)) {
      job.bad_format = true;
      std::snprintf(job.format_message, sizeof(job.format_message),
                    "expected an 8-bit (or less) palette or grey PNG, got colour type %d with %d-bit samples",
                    color, bit_depth);
      return false;
    }
    if (bit_depth < 8) png_set_packing(png);
  } else {
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);
    // Alpha is dropped, as PIL's convert("RGB") does. png_set_palette_to_rgb also turns a tRNS chunk
    // into an alpha channel, which must be stripped too.
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
  }
  const bool grey_src = color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA;
  int out_c = job.want < 0 ? 1 : job.want == 0 ? (grey_src ? 1 : 3) : job.want;
  // libpng produces grey for grey sources and RGB otherwise; we convert the rest ourselves.
  if (job.want >= 0 && grey_src && out_c == 3) png_set_gray_to_rgb(png);
  const bool rgb_to_grey = job.want >= 0 && !grey_src && out_c == 1;
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  // Never let libpng write more than we allocate.
  const size_t want_rowbytes = size_t(w) * size_t(rgb_to_grey ? 3 : out_c);
  if (png_get_rowbytes(png, info) != want_rowbytes) {
    job.bad_format = true;
    std::snprintf(job.format_message, sizeof(job.format_message),
                  "unsupported PNG layout (colour type %d, %d-bit, %d channels after conversion)", color, bit_depth,
                  int(png_get_channels(png, info)));
    return false;
  }
  Image& img = *job.out;
  img.height = h;
  img.width = w;
  img.channels = out_c;
  img.data.resize(img.numel());
  job.rows->resize(h);
  if (rgb_to_grey) job.scratch->resize(size_t(w) * 3 * h);
  for (png_uint_32 y = 0; y < h; ++y)
    (*job.rows)[y] = rgb_to_grey ? job.scratch->data() + size_t(y) * w * 3 : img.row(y);
  png_read_image(png, job.rows->data());
  png_read_end(png, nullptr);
  if (rgb_to_grey)
    for (size_t i = 0; i < size_t(w) * h; ++i) img.data[i] = rgb_to_luma(job.scratch->data() + 3 * i);
  return true;
}

Image decode_png_impl(const uint8_t* data, size_t size, int want, const char* op) {
  UNIREP_CHECK(data != nullptr || size == 0, op, ": null data pointer");
  UNIREP_CHECK(size >= 8 && png_sig_cmp(data, 0, 8) == 0, op, ": not a PNG file (bad signature, ", size,
               " bytes)");
  PngErrorState err;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error, png_on_warning);
  UNIREP_CHECK(png != nullptr, op, ": png_create_read_struct failed");
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw Error(std::string(op) + ": png_create_info_struct failed");
  }
  Image img;
  std::vector<png_bytep> rows;
  std::vector<uint8_t> scratch;
  PngDecodeJob job{{data, size}, want, &img, &rows, &scratch};
  bool ok = run_png_decode(png, info, job);
  png_destroy_read_struct(&png, &info, nullptr);
  if (!ok) {
    if (job.bad_format) throw Error(std::string(op) + ": " + job.format_message);
    throw Error(std::string(op) + ": corrupt PNG (" + err.message + ")");
  }
  return img;
}

struct PngWriteJob {
  const Image* image;
  std::vector<uint8_t>* out;
  std::vector<png_bytep>* rows;
};

void png_write_to_vector(png_structp png, png_bytep in, png_size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), in, in + n);
}

void png_flush_noop(png_structp) {}

bool run_png_encode(png_structp png, png_infop info, PngWriteJob& job) {
  if (setjmp(png_jmpbuf(png))) return false;
  const Image& img = *job.image;
  png_set_write_fn(png, job.out, png_write_to_vector, png_flush_noop);
  png_set_IHDR(png, info, png_uint_32(img.width), png_uint_32(img.height), 8,
               img.channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  png_write_image(png, job.rows->data());
  png_write_end(png, nullptr);
  return true;
}

}  // namespace

// ----------------------------------------------------------------------------------- JPEG API

JpegHeader read_jpeg_header(const uint8_t* data, size_t size) {
  UNIREP_CHECK(data != nullptr && size > 0, "read_jpeg_header: empty input");
  JpegErrorManager mgr;
  jpeg_decompress_struct cinfo;
  cinfo.err = &mgr.pub;
  install_jpeg_errors(mgr, true);
  JpegHeader h;
  bool ok = run_jpeg_header(cinfo, mgr, data, size, h);
  jpeg_destroy_decompress(&cinfo);
  UNIREP_CHECK(ok, "read_jpeg_header: corrupt JPEG (", mgr.message, "), ", size, " bytes");
  return h;
}

JpegDecoded decode_jpeg_region(const uint8_t* data, size_t size, const JpegDecodeOptions& options) {
  UNIREP_CHECK(data != nullptr && size > 0, "decode_jpeg: empty input");
  UNIREP_CHECK(options.channels == 0 || options.channels == 1 || options.channels == 3,
               "decode_jpeg: channels must be 0, 1 or 3, got ", options.channels);
  UNIREP_CHECK(options.scale_num >= 1 && options.scale_num <= 16, "decode_jpeg: scale_num must be in [1, 16], got ",
               options.scale_num);
  UNIREP_CHECK(options.region_width >= 0 && options.region_height >= 0,
               "decode_jpeg: negative region size ", options.region_height, "x", options.region_width);
  JpegErrorManager mgr;
  jpeg_decompress_struct cinfo;
  cinfo.err = &mgr.pub;
  install_jpeg_errors(mgr, options.strict);
  JpegDecoded out;
  std::vector<uint8_t> scratch;
  std::vector<JSAMPROW> row_ptrs;
  JpegDecodeJob job{data, size, &options, &out, &scratch, &row_ptrs};
  bool ok = run_jpeg_decode(cinfo, mgr, job);
  jpeg_destroy_decompress(&cinfo);
  UNIREP_CHECK(ok, "decode_jpeg: corrupt JPEG (", mgr.message, "), ", size, " bytes");
  return out;
}

Image decode_jpeg(const uint8_t* data, size_t size, const JpegDecodeOptions& options) {
  return decode_jpeg_region(data, size, options).image;
}

std::vector<uint8_t> encode_jpeg(const Image& image, int quality, bool progressive) {
  UNIREP_CHECK(image.channels == 1 || image.channels == 3, "encode_jpeg: expected 1 or 3 channels, got image ",
               image.shape_str());
  UNIREP_CHECK(image.height > 0 && image.width > 0 && image.height <= 65500 && image.width <= 65500,
               "encode_jpeg: image size must be in [1, 65500], got ", image.shape_str());
  UNIREP_CHECK(quality >= 1 && quality <= 100, "encode_jpeg: quality must be in [1, 100], got ", quality);
  JpegErrorManager mgr;
  jpeg_compress_struct cinfo;
  cinfo.err = &mgr.pub;
  install_jpeg_errors(mgr, true);
  JpegEncodeJob job{&image, quality, progressive};
  bool ok = run_jpeg_encode(cinfo, mgr, job);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out;
  if (ok) out.assign(job.buffer, job.buffer + job.size);
  std::free(job.buffer);
  UNIREP_CHECK(ok, "encode_jpeg: ", mgr.message);
  return out;
}

// ------------------------------------------------------------------------------------ PNG API

Image decode_png(const uint8_t* data, size_t size, int channels) {
  UNIREP_CHECK(channels == 0 || channels == 1 || channels == 3, "decode_png: channels must be 0, 1 or 3, got ",
               channels);
  return decode_png_impl(data, size, channels, "decode_png");
}

Image decode_png_indices(const uint8_t* data, size_t size) {
  return decode_png_impl(data, size, -1, "decode_png_indices");
}

std::vector<uint8_t> encode_png(const Image& image) {
  UNIREP_CHECK(image.channels == 1 || image.channels == 3, "encode_png: expected 1 or 3 channels, got image ",
               image.shape_str());
  UNIREP_CHECK(image.height > 0 && image.width > 0, "encode_png: empty image ", image.shape_str());
  PngErrorState err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_on_error, png_on_warning);
  UNIREP_CHECK(png != nullptr, "encode_png: png_create_write_struct failed");
  png_infop info = png_create_info_struct(png);
  std::vector<uint8_t> out;
  std::vector<png_bytep> rows(size_t(image.height));
  for (int64_t y = 0; y < image.height; ++y) rows[size_t(y)] = const_cast<png_bytep>(image.row(y));
  PngWriteJob job{&image, &out, &rows};
  bool ok = info != nullptr && run_png_encode(png, info, job);
  png_destroy_write_struct(&png, &info);
  UNIREP_CHECK(ok, "encode_png: ", err.message);
  return out;
}

std::string image_format(const uint8_t* data, size_t size) {
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return "jpeg";
  if (size >= 8 && png_sig_cmp(data, 0, 8) == 0) return "png";
  return "";
}

Image decode_image(const uint8_t* data, size_t size, int channels) {
  std::string fmt = image_format(data, size);
  if (fmt == "jpeg") {
    JpegDecodeOptions opt;
    opt.channels = channels;
    return decode_jpeg(data, size, opt);
  }
  if (fmt == "png") return decode_png(data, size, channels);
  throw Error(detail::concat("decode_image: neither JPEG nor PNG (", size, " bytes, first bytes ",
                             size > 0 ? int(data[0]) : -1, " ", size > 1 ? int(data[1]) : -1, ")"));
}

}  // namespace unirep
