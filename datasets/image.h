// Decoded images and the JPEG/PNG codecs of the data pipeline (CPU only).
//
// An Image is 8-bit HWC: RGB (3 channels) or one channel (grey or a segmentation label map).
// JPEG goes through the libjpeg API (libjpeg-turbo here, whose SIMD IDCT, upsampling and colour
// conversion make decoding fast); PNG through libpng. Both report a corrupt or truncated file as an
// unirep::Error (libjpeg's fatal errors are caught with setjmp/longjmp in a custom error manager, so
// nothing calls exit()). Every decoder takes the encoded bytes; naming the shard and record in an
// error is the caller's job (the loader catches and rethrows with that context).
//
// JPEG decoding can be sped up in two ways that the augmentations use (datasets/transforms.h):
//  * DCT scaling (`scale_num` over 8): libjpeg computes a smaller IDCT per 8x8 block, producing an
//    image of ceil(W * scale_num / 8) x ceil(H * scale_num / 8) directly. The pixels are NOT those of
//    a full decode followed by a resize (the scaled IDCT is a box-like low-pass of its own), so the
//    result differs slightly (a few grey levels) from decoding at full size and resizing with PIL.
//  * region decoding (`region_*`): only the scanlines and the iMCU columns that cover the region are
//    decoded (jpeg_skip_scanlines / jpeg_crop_scanline). The Huffman data of skipped rows is still
//    parsed, but IDCT, upsampling and colour conversion are skipped; rows below the region are not
//    read at all (so a truncation there goes unnoticed: what is returned is still correct). The
//    returned region can be wider than asked (libjpeg aligns it to iMCU columns); its offset is
//    reported. The pixels are bit-identical to a full decode (libjpeg's chroma upsampler treats the
//    left cut as an image edge, so we decode one column more on the left and drop it; tested).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace unirep {

// Resampling filters (PIL's names). Nearest: the source pixel under the output pixel's centre.
enum class Interpolation { Nearest, Bilinear, Bicubic };

struct Image {
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> data;  // height * width * channels bytes, row-major HWC

  Image() = default;
  Image(int64_t h, int64_t w, int64_t c, uint8_t fill = 0);
  size_t numel() const { return size_t(height * width * channels); }
  bool empty() const { return numel() == 0; }
  uint8_t* row(int64_t y) { return data.data() + size_t(y * width * channels); }
  const uint8_t* row(int64_t y) const { return data.data() + size_t(y * width * channels); }
  uint8_t& at(int64_t y, int64_t x, int64_t c) { return data[size_t((y * width + x) * channels + c)]; }
  uint8_t at(int64_t y, int64_t x, int64_t c) const { return data[size_t((y * width + x) * channels + c)]; }
  std::string shape_str() const;  // "HxWxC"
};

// ---------------------------------------------------------------------------------------- JPEG

struct JpegHeader {
  int64_t height = 0, width = 0;
  int channels = 0;       // components in the file: 1 (grey), 3 (YCbCr/RGB) or 4 (CMYK/YCCK)
  bool progressive = false;
};

// Reads only the header (fast: no entropy decoding). Throws unirep::Error on a bad header.
JpegHeader read_jpeg_header(const uint8_t* data, size_t size);

// The decoded size of a dimension at DCT scale num/8, as libjpeg computes it: ceil(n * num / 8).
inline int64_t jpeg_scaled_size(int64_t n, int num) { return (n * num + 7) / 8; }

struct JpegDecodeOptions {
  // Output channels: 3 = RGB (grey and CMYK files are converted), 1 = grey (colour files are converted
  // with libjpeg's luma), 0 = 1 for grey files and 3 otherwise.
  int channels = 3;
  // DCT scaling: decode at scale_num / 8 (1..16; 8 = full size). See the file comment.
  int scale_num = 8;
  // Region of the (scaled) output to decode, in output pixels; width/height 0 = the whole image.
  int64_t region_x = 0, region_y = 0, region_width = 0, region_height = 0;
  // libjpeg warnings about corrupt data (premature end of file, bad Huffman codes, ...) are errors.
  // The one warning always tolerated is "extraneous bytes before marker", which real photo collections
  // (ImageNet included) contain in otherwise valid files and which PIL ignores too.
  bool strict = true;
  // Use libjpeg's fast integer IDCT (JDCT_IFAST) and non-fancy chroma upsampling: faster, less accurate.
  // Off by default (PIL decodes with the accurate islow IDCT and fancy upsampling, as we do).
  bool fast = false;
};

struct JpegDecoded {
  Image image;
  int64_t x0 = 0, y0 = 0;                // where `image` starts within the full scaled output
  int64_t full_height = 0, full_width = 0;  // size of the full scaled output
};

// Decodes a JPEG (baseline or progressive; grey, YCbCr, RGB, CMYK or YCCK; CMYK is converted to RGB as
// PIL does, taking the inverted Adobe storage into account).
Image decode_jpeg(const uint8_t* data, size_t size, const JpegDecodeOptions& options = {});
// The same, also reporting where a region decode landed.
JpegDecoded decode_jpeg_region(const uint8_t* data, size_t size, const JpegDecodeOptions& options);

// Encodes an RGB or one-channel image (quality 1..100, 4:2:0 chroma subsampling for RGB, as PIL's
// default; optimised Huffman tables; baseline unless `progressive`).
std::vector<uint8_t> encode_jpeg(const Image& image, int quality = 90, bool progressive = false);

// ---------------------------------------------------------------------------------------- PNG

// Decodes a PNG to 8-bit: channels 3 = RGB, 1 = grey, 0 = as stored (grey -> 1, anything else -> 3).
// Palettes are expanded, 16-bit samples are reduced to 8 bits, alpha is dropped (composited on
// nothing, as PIL's convert("RGB") does).
Image decode_png(const uint8_t* data, size_t size, int channels = 3);

// Decodes a one-channel 8-bit PNG (palette or grey) WITHOUT expanding the palette: the stored indices,
// which is what a segmentation label map holds (ADE20K annotations). Throws on other formats.
Image decode_png_indices(const uint8_t* data, size_t size);

// Encodes a one- or three-channel image losslessly (8-bit grey or RGB).
std::vector<uint8_t> encode_png(const Image& image);

// Sniffs the format: "jpeg", "png" or "" (unknown).
std::string image_format(const uint8_t* data, size_t size);
// Decodes a JPEG or PNG by sniffing (RGB unless channels says otherwise).
Image decode_image(const uint8_t* data, size_t size, int channels = 3);

}  // namespace unirep
