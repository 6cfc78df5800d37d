// Small helpers shared by the dataset tests: capturing an Error's message, and a deterministic
// high-contrast image with an exact fingerprint.
#pragma once
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "core/error.h"
#include "datasets/image.h"

namespace unirep::testing_data {

// The message of the unirep::Error that f throws (a test failure when it throws none).
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a unirep::Error";
  return "";
}

// A high-contrast test pattern (wrapping ramps): exercises the clamping of cubic overshoot.
inline Image pattern(int64_t h, int64_t w) {
  Image img(h, w, 3);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t c = 0; c < 3; ++c) img.at(y, x, c) = uint8_t((x * 37 + y * 91 + c * 53 + x * y * 7) % 256);
  return img;
}

// Sum of (i + 1) * v_i mod 2^32: a compact exact fingerprint of an image.
inline uint32_t checksum(const Image& img) {
  uint64_t s = 0;
  for (size_t i = 0; i < img.numel(); ++i) s += uint64_t(i + 1) * img.data[i];
  return uint32_t(s & 0xFFFFFFFFull);
}

}  // namespace unirep::testing_data

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << "in: " << (text)
