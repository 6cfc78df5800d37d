// Where each lane's mma.m16n8k16 operands come from in the tensor-core depthwise kernels
// (core/ops/depthwise_conv_tc.cuh). Plain host/device functions so a CPU test can emulate a warp with
// them (tests/ops/test_depthwise_tc_layout.cpp) and the kernels use the very same index math.
//
// PTX fragments of mma.m16n8k16 (16-bit inputs, f32 accumulators), lane = 4 gid + tig:
//   A (16 x 16, row major), register r = 2 h + v: row gid + 8 v, columns 2 tig + 8 h + {0, 1}
//   B (16 x 8), register r: rows (k) 2 tig + 8 r + {0, 1}, column (n) gid
//   C / D (16 x 8), register r: row gid + 8 (r / 2), column 2 tig + r % 2
// ldmatrix.x4 (no .trans): lanes 8 m .. 8 m + 7 give the row addresses of matrix m (8 rows of 8 halves);
// lane t receives in register m row t / 4, halves 2 (t % 4) + {0, 1} of matrix m. A matrix whose rows are
// n and whose halves are 8 consecutive k is therefore exactly one B register.
//
// Forward (per channel, kernel row kh): A[i, j] = W[kh, j - i] (zero unless 0 <= j - i < S), i an output
// column of the 16-column tile, j in 0..31 the input column (two k16 steps ks). A lane's register holds
// W at d = j - i = 16 ks + 8 (h - v) + d0, d0 = 2 tig - gid, and the next tap: pair index
// p = 2 ks + h - v of the three pairs (d0, d0 + 8, d0 + 16); p = -1 (d <= -2) and p = 3 (d >= 17 > S - 1)
// are zero for S <= 15, so a lane keeps 3 registers per kernel row: ks 0 = {P0, 0, P1, P0},
// ks 1 = {P2, P1, 0, P2}.
// Weight gradient (per channel, input row): A[kw, k] = x[col w0 + k + kw] (Hankel), register 2 h + v at
// staged column k + kw = q0 + 8 (h + v), q0 = 2 tig + gid: pairs (q0, q0 + 8, q0 + 16), registers
// {Q0, Q1, Q1, Q2}; q0 is odd for odd gid, so pairs are gathered from two 16-bit loads.
#pragma once
#include "core/dtype.h"

namespace unirep::cuda::depthwise_tc {

UNIREP_HD int lane_gid(int lane) { return lane >> 2; }
UNIREP_HD int lane_tig(int lane) { return lane & 3; }

// C / D register r of a lane: its M index (row) and N index (column).
UNIREP_HD int acc_m(int lane, int r) { return lane_gid(lane) + 8 * (r >> 1); }
UNIREP_HD int acc_n(int lane, int r) { return 2 * lane_tig(lane) + (r & 1); }

// Forward: first kernel tap of the lane's pairs, and which pair (0..2, -1: zero) A register r of k16
// step ks holds.
UNIREP_HD int fwd_tap0(int lane) { return 2 * lane_tig(lane) - lane_gid(lane); }
UNIREP_HD int fwd_a_pair(int ks, int r) {
  const int p = 2 * ks + (r >> 1) - (r & 1);
  return p < 0 || p > 2 ? -1 : p;
}
// Forward ldmatrix.x4 row address of the lane: output row (n) within the 8-row tile, and input column
// offset within the 32 columns of the two k16 steps (matrices: k 0-7, 8-15 | 16-23, 24-31).
UNIREP_HD int fwd_b_row(int lane) { return lane & 7; }
UNIREP_HD int fwd_b_col(int lane) { return 8 * (lane >> 3); }

// Weight gradient: first staged x column of the lane's pairs, and which pair A register r holds.
UNIREP_HD int wgrad_col0(int lane) { return 2 * lane_tig(lane) + lane_gid(lane); }
UNIREP_HD int wgrad_a_pair(int r) { return (r >> 1) + (r & 1); }
// Weight-gradient ldmatrix.x4 row address: kernel row kh (n; matrices 0, 1: kh 0-7, 2, 3: kh 8-15) and
// column offset (k 0-7 or 8-15).
UNIREP_HD int wgrad_b_kh(int lane) { return (lane & 7) + 8 * (lane >> 4); }
UNIREP_HD int wgrad_b_col(int lane) { return 8 * ((lane >> 3) & 1); }

}  // namespace unirep::cuda::depthwise_tc
