// matmul and linear over the batched GEMM of core/ops/matmul.h.
//
// matmul (torch.matmul): a 1-d a is a row [1, k], a 1-d b a column [k, 1] (that dim is dropped from
// the result); the batch dims broadcast. A broadcast operand is never materialised when it is shared
// by the whole batch: it gets batch stride 0, and when b is the shared one (x @ W) the product is a
// single GEMM with the batch folded into m. Backward per batch entry: dA = dC B^T, dB = A^T dC,
// summed over the batch entries that shared an operand (for a shared b that sum is again one GEMM:
// dB = A_flat^T dC_flat over all nb*m rows).
//
// linear: y = x W^T + b as one GEMM over the rows of x.reshape({-1, in}); the bias is written into
// y first and the GEMM accumulates onto it (beta = 1), so y is rounded once. Backward:
// dX = dY W, dW = dY^T X (one GEMM over all rows), db = 1^T dY (a GEMM with a ones row, which
// reduces over the rows without transposing dY).
#include "autograd/functions/linear.h"

#include "autograd/node.h"
#include "autograd/ops.h"
#include "core/ops/matmul.h"

namespace unirep {

namespace {

void check_operand(const char* op, const char* what, const Tensor& t) {
  UNIREP_CHECK(t.defined(), op, ": ", what, " is undefined");
  UNIREP_CHECK(is_floating(t.dtype()), op, ": ", what, " must be a floating tensor, got ", dtype_name(t.dtype()), " ",
               shape_str(t.shape()));
}

Shape concat_shape(Shape s, std::initializer_list<int64_t> tail) {
  s.insert(s.end(), tail.begin(), tail.end());
  return s;
}

// A matmul operand ready for gemm: a detached packed tensor and its batch stride.
struct Operand {
  Tensor t;
  int64_t stride = 0;     // 0: one matrix shared by the whole batch
  bool expanded = false;  // materialised over a partially broadcast batch (gradient needs sum_to)
};

// t has shape own_batch + [rows, cols]; `batch` is the broadcast batch shape.
Operand make_operand(const Tensor& t, const Shape& batch, int64_t rows, int64_t cols) {
  int64_t own = shape_numel(Shape(t.shape().begin(), t.shape().end() - 2)), nb = shape_numel(batch);
  if (own == nb) return {t.contiguous(), rows * cols, false};
  if (own == 1) return {t.contiguous(), 0, false};
  return {t.expand(concat_shape(batch, {rows, cols})).contiguous(), rows * cols, true};
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Matmul, {a, b},
                         [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); });
  check_operand("matmul", "a", a);
  check_operand("matmul", "b", b);
  check_same_dtype("matmul", a, b);
  check_same_device("matmul", a, b);
  const Shape sa = a.shape(), sb = b.shape();
  UNIREP_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands need at least 1 dim, got a ", shape_str(sa),
               " and b ", shape_str(sb));
  const Shape a2 = a.dim() == 1 ? Shape{1, sa[0]} : sa;
  const Shape b2 = b.dim() == 1 ? Shape{sb[0], 1} : sb;
  const int64_t m = a2[a2.size() - 2], k = a2.back(), n = b2.back();
  UNIREP_CHECK(b2[b2.size() - 2] == k, "matmul: a ", shape_str(sa), " @ b ", shape_str(sb), ": a has ", k,
               " columns but b has ", b2[b2.size() - 2], " rows");
  const Shape batch = broadcast_shapes(Shape(a2.begin(), a2.end() - 2), Shape(b2.begin(), b2.end() - 2), "matmul");
  const int64_t nb = shape_numel(batch);

  Operand A = make_operand(a.detach().reshape(a2), batch, m, k);
  Operand B = make_operand(b.detach().reshape(b2), batch, k, n);
  Tensor out = Tensor::empty(concat_shape(batch, {m, n}), a.dtype(), a.device());
  if (B.stride == 0)
    gemm(out, A.t, B.t, GemmParams{1, nb * m, n, k});  // shared b: one GEMM over all nb*m rows
  else
    gemm(out, A.t, B.t, GemmParams{nb, m, n, k, false, false, A.stride, B.stride});
  Shape out_shape = batch;
  if (a.dim() > 1) out_shape.push_back(m);
  if (b.dim() > 1) out_shape.push_back(n);
  out = out.view(out_shape);

  if (needs_grad({a, b})) {
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    Operand saved_a = need_b ? A : Operand{}, saved_b = need_a ? B : Operand{};
    record("matmul", {a, b}, {out}, [=, A = saved_a, B = saved_b](const std::vector<Tensor>& grads) {
      Tensor g = grads[0].contiguous();  // nb x [m, n], packed
      Tensor da, db;
      if (need_a) {
        if (A.stride == 0 && nb == 0) {
          da = Tensor::zeros({m, k}, g.dtype(), g.device());
        } else if (A.stride == 0) {  // a shared by the batch: sum_i dC[i] B[i]^T
          Tensor full = Tensor::empty({nb, m, k}, g.dtype(), g.device());
          gemm(full, g, B.t, GemmParams{nb, m, k, n, false, true, m * n, B.stride});
          da = sum(full, {0});
        } else {
          Tensor full = Tensor::empty(concat_shape(batch, {m, k}), g.dtype(), g.device());
          if (B.stride == 0)
            gemm(full, g, B.t, GemmParams{1, nb * m, k, n, false, true});
          else
            gemm(full, g, B.t, GemmParams{nb, m, k, n, false, true, m * n, B.stride});
          da = A.expanded ? sum_to(full, a2) : full;
        }
        da = da.reshape(sa);
      }
      if (need_b) {
        if (B.stride == 0) {  // b shared by the batch: A_flat^T dC_flat, one GEMM
          db = Tensor::empty({k, n}, g.dtype(), g.device());
          gemm(db, A.t, g, GemmParams{1, k, n, nb * m, true, false});
        } else {
          Tensor full = Tensor::empty(concat_shape(batch, {k, n}), g.dtype(), g.device());
          gemm(full, A.t, g, GemmParams{nb, k, n, m, true, false, A.stride, m * n});
          db = B.expanded ? sum_to(full, b2) : full;
        }
        db = db.reshape(sb);
      }
      return std::vector<Tensor>{da, db};
    });
  }
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (autocast_enabled())
    return autocast_call(AutocastOp::Linear, {x, weight, bias},
                         [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); });
  check_operand("linear", "input", x);
  check_operand("linear", "weight", weight);
  UNIREP_CHECK(weight.dim() == 2, "linear: weight must be 2-d [out_features, in_features], got ",
               shape_str(weight.shape()));
  UNIREP_CHECK(x.dim() >= 1, "linear: input must have at least 1 dim [..., in_features], got ", shape_str(x.shape()));
  const int64_t out_f = weight.size(0), in_f = weight.size(1);
  UNIREP_CHECK(x.size(-1) == in_f, "linear: input ", shape_str(x.shape()), " has ", x.size(-1), " features, weight ",
               shape_str(weight.shape()), " expects ", in_f);
  check_same_dtype("linear", x, weight);
  check_same_device("linear", x, weight);
  if (bias.defined()) {
    check_operand("linear", "bias", bias);
    UNIREP_CHECK(bias.shape() == Shape{out_f}, "linear: bias ", shape_str(bias.shape()), " does not match weight ",
                 shape_str(weight.shape()), ": expected [", out_f, "]");
    check_same_dtype("linear", x, bias);
    check_same_device("linear", x, bias);
  }

  const Shape lead(x.shape().begin(), x.shape().end() - 1);
  const int64_t rows = shape_numel(lead);
  Tensor x2 = x.detach().contiguous().view({rows, in_f});
  Tensor w = weight.detach().contiguous();
  Tensor y = Tensor::empty({rows, out_f}, x.dtype(), x.device());
  linear_gemm(y, x2, w, bias.defined() ? bias.detach().contiguous() : Tensor());
  y = y.view(concat_shape(lead, {out_f}));

  if (needs_grad({x, weight, bias})) {
    bool need_x = x.requires_grad(), need_w = weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
    Shape x_shape = x.shape();
    Tensor saved_x = need_w ? save(x2) : Tensor(), saved_w = need_x ? save(w) : Tensor();
    record("linear", {x, weight, bias}, {y}, [=, x2 = saved_x, w = saved_w](const std::vector<Tensor>& grads) {
      Tensor g = grads[0].contiguous().view({rows, out_f});
      Tensor dx, dw, db;
      if (need_x) {  // dX = dY W
        dx = Tensor::empty({rows, in_f}, g.dtype(), g.device());
        gemm(dx, g, w, GemmParams{1, rows, in_f, out_f});
        dx = dx.view(x_shape);
      }
      if (need_b) db = Tensor::empty({out_f}, g.dtype(), g.device());
      if (need_w) {  // dW = dY^T X and db = 1^T dY, over all rows
        dw = Tensor::empty({out_f, in_f}, g.dtype(), g.device());
        linear_weight_grad(dw, db, g, x2);
      } else if (need_b) {
        linear_bias_grad(db, g);
      }
      return std::vector<Tensor>{dx, dw, db};
    });
  }
  return y;
}

}  // namespace unirep
