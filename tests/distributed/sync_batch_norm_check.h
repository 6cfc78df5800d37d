// One rank's half of "SyncBN forward/backward equals single-process BN over the concatenated
// batch", for any Communicator: the fake in-process one (test_sync_batch_norm.cpp) or a real
// MPI/NCCL one, every rank of the group calling
//
//   EXPECT_TRUE(check_sync_batch_norm(comm, SyncBnCheck{{6, 3, 2, 5}, {4, 2}}));
//
// with the same case. Every rank draws the whole batch from the case's seed, runs plain
// batch_norm on all of it (the reference), then sync_batch_norm on its own rows (dim 0) with
// comm, and compares:
//   - its output rows with the reference's;
//   - running_mean/running_var with the reference's, and bitwise equal on every rank;
//   - its x.grad with R times the reference's rows, and the parameter gradients averaged over the
//     ranks (the reducer's job, done here with one all_reduce each) with the reference's.
// The loss is the mean over the global batch of B samples, L = (1/B) sum(y u) with fixed random
// weights u; rank r's loss is L_r = (R/B) sum(y_r u_r) (its local mean when the split is even),
// so (1/R) sum_r L_r = L (see distributed/sync_batch_norm.h for why x.grad is R dL/dx).
// A bf16/f16 dtype gets float32 parameters and running stats (autocast's master weights), and the
// loss is formed in float32.
#pragma once
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "core/generator.h"
#include "distributed/sync_batch_norm.h"

namespace unirep::testing {

struct SyncBnCheck {
  Shape shape;                     // the global batch [B, ..., C]
  std::vector<int64_t> rows;       // samples (dim 0) of each rank, in rank order, summing to B
  DType dtype = DType::Float64;
  Device device = Device::cpu();
  double tol = 1e-12;              // on max |sync - reference| / max |reference|, per tensor
  uint64_t seed = 0;
  bool affine = true;
  double momentum = 0.1, eps = 1e-5;
};

// max |actual - expected| <= tol max(max |expected|, floor) (a NaN anywhere fails). A floor for
// gradients that are 0 up to rounding (a bias followed by a batch norm).
inline ::testing::AssertionResult sync_bn_close(const std::string& what, const Tensor& actual,
                                                const Tensor& expected, double tol, double floor = 1e-30) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << what << ": shape " << shape_str(actual.shape()) << " vs "
                                         << shape_str(expected.shape());
  const std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  double scale = 0, worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < e.size(); ++i) scale = std::max(scale, std::abs(e[i]));
  for (size_t i = 0; i < e.size(); ++i) {
    const double d = std::abs(a[i] - e[i]);
    if (!(d <= worst)) {
      worst = std::isnan(d) ? std::numeric_limits<double>::infinity() : d;
      at = i;
    }
  }
  scale = std::max(scale, floor);
  if (worst <= tol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": max |difference| " << worst << " at element " << at << " ("
                                       << a[at] << " vs " << e[at] << "), allowed " << tol * scale;
}

inline ::testing::AssertionResult check_sync_batch_norm(Communicator& comm, const SyncBnCheck& c) {
  const int R = comm.size(), rank = comm.rank();
  const int64_t B = c.shape[0], C = c.shape.back();
  UNIREP_CHECK(int(c.rows.size()) == R && std::accumulate(c.rows.begin(), c.rows.end(), int64_t(0)) == B,
               "check_sync_batch_norm: rows must give the samples of each of the ", R, " ranks, summing to ", B);
  const bool low = c.dtype == DType::BFloat16 || c.dtype == DType::Float16;
  const DType pdtype = low ? DType::Float32 : c.dtype;

  // The same draws on every rank. x has per-channel offsets, so its mean is far from 0.
  Generator gen(c.seed);
  Tensor x_full, u;
  {
    NoGradGuard no_grad;
    Tensor offsets = mul_scalar(Tensor::randn({C}, gen, DType::Float64), 3.0);
    x_full = add(mul_scalar(Tensor::randn(c.shape, gen, DType::Float64), 2.0), offsets).to(c.dtype).to(c.device);
    u = Tensor::randn(c.shape, gen, pdtype, c.device);
  }
  Tensor w, b;
  if (c.affine) {
    w = Tensor::rand({C}, gen, 0.5, 1.5, pdtype, c.device);
    b = Tensor::randn({C}, gen, pdtype, c.device);
  }
  const Tensor rm = Tensor::randn({C}, gen, pdtype, c.device), rv = Tensor::rand({C}, gen, 0.5, 2.0, pdtype, c.device);
  auto leaf = [](const Tensor& t) { return t.defined() ? t.clone().requires_grad_() : Tensor(); };
  auto loss = [&](const Tensor& y, const Tensor& weights, double scale) {
    return mul_scalar(sum(mul(y.to(pdtype), weights)), scale);
  };

  // Reference: one process, the whole batch, L = (1/B) sum(y u).
  Tensor xr = leaf(x_full), wr = leaf(w), br = leaf(b), rmr = rm.clone(), rvr = rv.clone();
  Tensor yr = batch_norm(xr, wr, br, rmr, rvr, true, c.momentum, c.eps);
  loss(yr, u, 1.0 / double(B)).backward();

  // This rank: its rows, L_r = (R / B) sum(y_r u_r).
  const int64_t begin = std::accumulate(c.rows.begin(), c.rows.begin() + rank, int64_t(0)), end = begin + c.rows[rank];
  Tensor xs = leaf(x_full.slice(0, begin, end)), ws = leaf(w), bs = leaf(b), rms = rm.clone(), rvs = rv.clone();
  Tensor ys = sync_batch_norm(xs, ws, bs, rms, rvs, true, c.momentum, c.eps, comm);
  loss(ys, u.slice(0, begin, end), double(R) / double(B)).backward();

  std::ostringstream tag;
  tag << "rank " << rank << " of " << R << ", " << dtype_name(c.dtype) << " " << shape_str(c.shape) << ": ";
  std::vector<::testing::AssertionResult> results;
  results.push_back(sync_bn_close(tag.str() + "output", ys, yr.slice(0, begin, end), c.tol));
  results.push_back(sync_bn_close(tag.str() + "running_mean", rms, rmr, c.tol));
  results.push_back(sync_bn_close(tag.str() + "running_var", rvs, rvr, c.tol));
  {
    NoGradGuard no_grad;
    results.push_back(sync_bn_close(tag.str() + "x.grad / R", mul_scalar(xs.grad(), 1.0 / R),
                                    xr.grad().slice(0, begin, end), c.tol));
  }
  if (c.affine) {
    // What the gradient reducer does: average over the ranks.
    for (auto [name, local, expected] : {std::tuple{"weight.grad", ws.grad(), wr.grad()},
                                         std::tuple{"bias.grad", bs.grad(), br.grad()}}) {
      Tensor averaged = local.clone();
      comm.all_reduce(averaged, ReduceOp::Sum);
      averaged.mul_(1.0 / R);
      results.push_back(sync_bn_close(tag.str() + "averaged " + name, averaged, expected, c.tol));
    }
  }
  // The running stats must be bitwise the same on every rank (no broadcast keeps them in step).
  for (const Tensor& stat : {rms, rvs}) {
    Tensor hi = stat.clone(), lo = stat.clone();
    comm.all_reduce(hi, ReduceOp::Max);
    comm.all_reduce(lo, ReduceOp::Min);
    if (hi.to_vector<double>() != lo.to_vector<double>())
      results.push_back(::testing::AssertionFailure() << tag.str() << "running stats differ between ranks");
  }
  for (auto& r : results)
    if (!r) return r;
  return ::testing::AssertionSuccess();
}

}  // namespace unirep::testing
