// The lane index math of the tensor-core depthwise kernels (core/ops/depthwise_conv_tc_layout.h), checked
// on the CPU: a warp is emulated with mma.m16n8k16 and ldmatrix.x4 written from the PTX ISA fragment
// definitions (not from the layout header), the kernels' per-channel loops are replayed with the
// header's lane addresses and register choices over staged zero-padded planes, and the results are
// compared with a direct convolution in double (exact up to summation order). Covers several tiles per
// image with partial edge tiles, kernel sizes 7..15, "same" and "valid" padding, the 180-degree
// flip of the input gradient, and the weight gradient's padded kw / kh rows.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <random>
#include <vector>

#include "core/ops/depthwise_conv_tc_layout.h"

namespace unirep::cuda::depthwise_tc {
namespace {

using Regs = double[32][4][2];  // [lane][register][half]

// D (16 x 8) += A (16 x 16) B (16 x 8) from the PTX fragments: A register r of lane 4 g + t holds
// row g + 8 (r % 2), columns 2 t + 8 (r / 2) + {0, 1}; B register r holds rows 2 t + 8 r + {0, 1},
// column g; D register r holds row g + 8 (r / 2), column 2 t + r % 2.
void mma(double (&d)[32][4], const Regs& a, const double (&b)[32][2][2]) {
  double A[16][16], B[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int r = 0; r < 4; ++r)
      for (int e = 0; e < 2; ++e) A[g + 8 * (r % 2)][2 * t + 8 * (r / 2) + e] = a[lane][r][e];
    for (int r = 0; r < 2; ++r)
      for (int e = 0; e < 2; ++e) B[2 * t + 8 * r + e][g] = b[lane][r][e];
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int r = 0; r < 4; ++r) {
      const int m = g + 8 * (r / 2), n = 2 * t + r % 2;
      for (int k = 0; k < 16; ++k) d[lane][r] += A[m][k] * B[k][n];
    }
  }
}

// ldmatrix.x4: lanes 8 m .. 8 m + 7 address the rows of matrix m; lane t receives row t / 4, halves
// 2 (t % 4) + {0, 1} of every matrix, matrix m in register m.
void ldmatrix_x4(double (&out)[32][4][2], const double* const (&rows)[32]) {
  for (int lane = 0; lane < 32; ++lane)
    for (int m = 0; m < 4; ++m)
      for (int e = 0; e < 2; ++e) out[lane][m][e] = rows[8 * m + lane / 4][2 * (lane % 4) + e];
}

// One ldmatrix.x4 of B rows, split into the fragments of the two k16 steps (registers 0-1 and 2-3).
void load_b_steps(const double* const (&rows)[32], double (&b0)[32][2][2], double (&b1)[32][2][2]) {
  double b[32][4][2];
  ldmatrix_x4(b, rows);
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < 2; ++e) {
      b0[lane][0][e] = b[lane][0][e];
      b0[lane][1][e] = b[lane][1][e];
      b1[lane][0][e] = b[lane][2][e];
      b1[lane][1][e] = b[lane][3][e];
    }
}

struct Image {
  int H, W;
  std::vector<double> v;
  double at(int h, int w) const { return h < 0 || h >= H || w < 0 || w >= W ? 0.0 : v[size_t(h) * W + w]; }
};

Image random_image(int H, int W, std::mt19937& rng) {
  std::normal_distribution<double> nd;
  Image im{H, W, std::vector<double>(size_t(H) * W)};
  for (double& e : im.v) e = nd(rng);
  return im;
}

// The forward kernel of one channel: 32 x 32 output tiles, staged x plane with the halo, A pairs per
// kernel row from the band of W (flipped for the input gradient).
Image emulate_forward(const Image& x, const std::vector<double>& w, int R, int pad, bool flip) {
  const int Ho = x.H + 2 * pad - R + 1, Wo = x.W + 2 * pad - R + 1;
  auto weight = [&](int kh, int d) {
    if (d < 0 || d >= R) return 0.0;
    return flip ? w[size_t(R - 1 - kh) * R + (R - 1 - d)] : w[size_t(kh) * R + d];
  };
  Image y{Ho, Wo, std::vector<double>(size_t(Ho) * Wo, NAN)};
  for (int oh0 = 0; oh0 < Ho; oh0 += 32)
    for (int ow0 = 0; ow0 < Wo; ow0 += 32) {
      const int row_tiles = std::min(4, (Ho - oh0 + 7) / 8), col_tiles = std::min(2, (Wo - ow0 + 15) / 16);
      const int rows = 8 * row_tiles + R - 1, cols = 16 * col_tiles + 16, pitch = 56;
      std::vector<double> xs(size_t(rows) * pitch, NAN);  // unstaged halves would poison the sums
      for (int r = 0; r < rows; ++r)
        for (int q = 0; q < cols; ++q) xs[size_t(r) * pitch + q] = x.at(oh0 - pad + r, ow0 - pad + q);
      for (int ct = 0; ct < col_tiles; ++ct)
        for (int rt = 0; rt < row_tiles; ++rt) {
          double acc[32][4] = {};
          for (int kh = 0; kh < R; ++kh) {
            Regs a[2];
            for (int lane = 0; lane < 32; ++lane)
              for (int ks = 0; ks < 2; ++ks)
                for (int r = 0; r < 4; ++r) {
                  const int p = fwd_a_pair(ks, r);
                  for (int e = 0; e < 2; ++e) a[ks][lane][r][e] = p < 0 ? 0.0 : weight(kh, fwd_tap0(lane) + 8 * p + e);
                }
            const double* rows_of[32];
            for (int lane = 0; lane < 32; ++lane)
              rows_of[lane] = &xs[size_t(8 * rt + fwd_b_row(lane) + kh) * pitch + 16 * ct + fwd_b_col(lane)];
            double b0[32][2][2], b1[32][2][2];
            load_b_steps(rows_of, b0, b1);
            mma(acc, a[0], b0);
            mma(acc, a[1], b1);
          }
          for (int lane = 0; lane < 32; ++lane)
            for (int r = 0; r < 4; ++r) {
              const int oh = oh0 + 8 * rt + acc_n(lane, r), ow = ow0 + 16 * ct + acc_m(lane, r);
              if (oh < Ho && ow < Wo) y.v[size_t(oh) * Wo + ow] = acc[lane][r];
            }
        }
    }
  return y;
}

// The weight-gradient kernel of one channel: bands of 32 input rows x 32 output columns, staged x with
// the column halo and dy with 15 rows above, two kh tiles, kw and kh padded to 16.
std::vector<double> emulate_weight_grad(const Image& x, const Image& dy, int R, int pad) {
  double acc[2][32][4] = {};
  const int xp = 56, dp = 40;
  for (int ih0 = 0; ih0 < x.H; ih0 += 32)
    for (int ow0 = 0; ow0 < dy.W; ow0 += 32) {
      const int rows = std::min(32, x.H - ih0), col_tiles = std::min(2, (dy.W - ow0 + 15) / 16);
      std::vector<double> xs(size_t(rows) * xp, NAN), ds(size_t(rows + 15) * dp, NAN);
      for (int r = 0; r < rows; ++r)
        for (int q = 0; q < 16 * col_tiles + 16; ++q) xs[size_t(r) * xp + q] = x.at(ih0 + r, ow0 - pad + q);
      for (int r = 0; r < rows + 15; ++r)
        for (int q = 0; q < 16 * col_tiles; ++q) ds[size_t(r) * dp + q] = dy.at(ih0 + pad - 15 + r, ow0 + q);
      for (int r = 0; r < rows; ++r)
        for (int ct = 0; ct < col_tiles; ++ct) {
          Regs a;
          for (int lane = 0; lane < 32; ++lane)
            for (int reg = 0; reg < 4; ++reg)
              for (int e = 0; e < 2; ++e)
                a[lane][reg][e] = xs[size_t(r) * xp + 16 * ct + wgrad_col0(lane) + 8 * wgrad_a_pair(reg) + e];
          const double* rows_of[32];
          for (int lane = 0; lane < 32; ++lane)
            rows_of[lane] = &ds[size_t(r + 15 - wgrad_b_kh(lane)) * dp + 16 * ct + wgrad_b_col(lane)];
          double b0[32][2][2], b1[32][2][2];
          load_b_steps(rows_of, b0, b1);
          mma(acc[0], a, b0);
          mma(acc[1], a, b1);
        }
    }
  std::vector<double> dw(size_t(R) * R, NAN);
  for (int t = 0; t < 2; ++t)
    for (int lane = 0; lane < 32; ++lane)
      for (int r = 0; r < 4; ++r) {
        const int kw = acc_m(lane, r), kh = 8 * t + acc_n(lane, r);
        if (kw < R && kh < R) dw[size_t(kh) * R + kw] = acc[t][lane][r];
      }
  return dw;
}

struct Geometry {
  int H, W, R, pad;
};

void PrintTo(const Geometry& g, std::ostream* os) {
  *os << g.H << "x" << g.W << " k" << g.R << " pad " << g.pad;
}

class DepthwiseTcLayout : public ::testing::TestWithParam<Geometry> {};

TEST_P(DepthwiseTcLayout, ForwardInputGradAndWeightGradMatchDirectConvolution) {
  const Geometry geo = GetParam();
  const int R = geo.R, pad = geo.pad;
  std::mt19937 rng(unsigned(geo.H * 131 + geo.W * 7 + R));
  const Image x = random_image(geo.H, geo.W, rng);
  const Image w_img = random_image(R, R, rng);
  const std::vector<double>& w = w_img.v;
  const int Ho = geo.H + 2 * pad - R + 1, Wo = geo.W + 2 * pad - R + 1;
  const Image dy = random_image(Ho, Wo, rng);

  const Image y = emulate_forward(x, w, R, pad, false);
  ASSERT_EQ(y.H, Ho);
  for (int oh = 0; oh < Ho; ++oh)
    for (int ow = 0; ow < Wo; ++ow) {
      double ref = 0;
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < R; ++s) ref += w[size_t(r) * R + s] * x.at(oh - pad + r, ow - pad + s);
      ASSERT_NEAR(y.v[size_t(oh) * Wo + ow], ref, 1e-9) << "forward at " << oh << "," << ow;
    }

  // Input gradient: the forward on dy with the flipped kernel and padding R - 1 - pad.
  const Image dx = emulate_forward(dy, w, R, R - 1 - pad, true);
  ASSERT_EQ(dx.H, geo.H);
  ASSERT_EQ(dx.W, geo.W);
  for (int h = 0; h < geo.H; ++h)
    for (int wi = 0; wi < geo.W; ++wi) {
      double ref = 0;
      for (int r = 0; r < R; ++r)
        for (int s = 0; s < R; ++s) ref += w[size_t(r) * R + s] * dy.at(h + pad - r, wi + pad - s);
      ASSERT_NEAR(dx.v[size_t(h) * geo.W + wi], ref, 1e-9) << "input grad at " << h << "," << wi;
    }

  const std::vector<double> dw = emulate_weight_grad(x, dy, R, pad);
  for (int r = 0; r < R; ++r)
    for (int s = 0; s < R; ++s) {
      double ref = 0;
      for (int oh = 0; oh < Ho; ++oh)
        for (int ow = 0; ow < Wo; ++ow) ref += dy.v[size_t(oh) * Wo + ow] * x.at(oh - pad + r, ow - pad + s);
      ASSERT_NEAR(dw[size_t(r) * R + s], ref, 1e-8) << "weight grad at " << r << "," << s;
    }
}

INSTANTIATE_TEST_SUITE_P(Geometries, DepthwiseTcLayout,
                         ::testing::Values(Geometry{40, 37, 13, 6},   // 2 x 2 tiles, partial edges
                                           Geometry{9, 11, 7, 3},     // one partial tile
                                           Geometry{7, 7, 15, 7},     // image smaller than the kernel
                                           Geometry{20, 35, 11, 0},   // valid: input-grad padding 10
                                           Geometry{33, 18, 9, 4}));  // 33 input rows: two weight bands

TEST(DepthwiseTcLayoutPairs, ZeroRegistersAreOutsideTheBand) {
  // The registers dropped by fwd_a_pair (-1) only ever hold taps outside 0..14: pair -1 starts at
  // d0 - 8 <= -2, pair 3 at d0 + 24 >= 17.
  for (int lane = 0; lane < 32; ++lane) {
    EXPECT_LE(fwd_tap0(lane) - 8 + 1, -1);
    EXPECT_GE(fwd_tap0(lane) + 24, 15);
  }
  EXPECT_EQ(fwd_a_pair(0, 1), -1);
  EXPECT_EQ(fwd_a_pair(1, 2), -1);
  EXPECT_EQ(fwd_a_pair(0, 0), 0);
  EXPECT_EQ(fwd_a_pair(0, 3), 0);
  EXPECT_EQ(fwd_a_pair(1, 0), 2);
}

}  // namespace
}  // namespace unirep::cuda::depthwise_tc
