// The autocast state and policy table (autograd/autocast.h explains the policy).
#include "autograd/autocast.h"

#include "autograd/functions/cast.h"

namespace unirep {

namespace {

thread_local bool g_enabled = false;
thread_local DType g_dtype = DType::BFloat16;

enum class Rule {
  LowPrecision,  // every float32/bf16/f16 operand to the autocast dtype
  Float32,       // bf16/f16 operands up to float32
  MatchDtypes,   // mixed float32/bf16/f16 operands to the autocast dtype; equal dtypes untouched
};

Rule rule_of(AutocastOp op) {
  switch (op) {
    case AutocastOp::Conv2d:
    case AutocastOp::Linear:
    case AutocastOp::Matmul:
      return Rule::LowPrecision;
    case AutocastOp::Softmax:
    case AutocastOp::LogSoftmax:
    case AutocastOp::CrossEntropy:
    case AutocastOp::CrossEntropySoft:
      return Rule::Float32;
    case AutocastOp::Add:
    case AutocastOp::Sub:
    case AutocastOp::Mul:
    case AutocastOp::Div:
      return Rule::MatchDtypes;
  }
  throw Error("autocast: unknown op");
}

bool castable(const Tensor& t) {
  if (!t.defined()) return false;
  const DType d = t.dtype();
  return d == DType::Float32 || d == DType::BFloat16 || d == DType::Float16;
}

bool is_16bit(const Tensor& t) { return t.dtype() == DType::BFloat16 || t.dtype() == DType::Float16; }

}  // namespace

bool autocast_enabled() { return g_enabled; }
DType autocast_dtype() { return g_dtype; }

AutocastGuard::AutocastGuard(DType dtype, bool enabled) : prev_enabled_(g_enabled), prev_dtype_(g_dtype) {
  UNIREP_CHECK(!enabled || dtype == DType::BFloat16 || dtype == DType::Float16,
               "AutocastGuard: the autocast dtype must be bfloat16 or float16, got ", dtype_name(dtype));
  g_enabled = enabled;
  if (enabled) g_dtype = dtype;
}

AutocastGuard::~AutocastGuard() {
  g_enabled = prev_enabled_;
  g_dtype = prev_dtype_;
}

std::vector<Tensor> autocast_inputs(AutocastOp op, const std::vector<Tensor>& inputs) {
  if (!g_enabled) return inputs;
  std::vector<Tensor> out = inputs;
  switch (rule_of(op)) {
    case Rule::LowPrecision:
      for (Tensor& t : out)
        if (castable(t)) t = cast(t, g_dtype);
      break;
    case Rule::Float32:
      for (Tensor& t : out)
        if (castable(t) && is_16bit(t)) t = cast(t, DType::Float32);
      break;
    case Rule::MatchDtypes: {
      bool all_castable = true, mixed = false;
      for (const Tensor& t : out) {
        if (!castable(t)) {
          all_castable = false;
          break;
        }
        mixed = mixed || t.dtype() != out.front().dtype();
      }
      if (all_castable && mixed)
        for (Tensor& t : out) t = cast(t, g_dtype);
      break;
    }
  }
  return out;
}

}  // namespace unirep
