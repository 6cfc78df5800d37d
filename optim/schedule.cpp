#include "optim/schedule.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"

namespace unirep {

namespace {
const char* kind_name(ScheduleOptions::Kind kind) {
  switch (kind) {
    case ScheduleOptions::Kind::Cosine: return "cosine";
    case ScheduleOptions::Kind::Step: return "step";
    case ScheduleOptions::Kind::Poly: return "poly";
    case ScheduleOptions::Kind::Constant: return "constant";
  }
  return "?";
}
}  // namespace

Schedule::Schedule(ScheduleOptions options) : o_(std::move(options)) {
  const char* kind = kind_name(o_.kind);
  auto non_negative = [&](const char* field, double v) {
    UNIREP_CHECK(v >= 0, "Schedule (", kind, "): ", field, " must be >= 0, got ", v);
  };
  non_negative("base", o_.base);
  non_negative("final_value", o_.final_value);
  non_negative("warmup_start", o_.warmup_start);
  non_negative("gamma", o_.gamma);
  non_negative("power", o_.power);
  non_negative("total_steps", double(o_.total_steps));
  non_negative("warmup_steps", double(o_.warmup_steps));
  bool unbounded = o_.kind == ScheduleOptions::Kind::Constant && o_.total_steps == 0;
  UNIREP_CHECK(unbounded || o_.total_steps > o_.warmup_steps, "Schedule (", kind, "): total_steps (", o_.total_steps,
               ") must exceed warmup_steps (", o_.warmup_steps, ")");
  if (o_.kind != ScheduleOptions::Kind::Cosine)
    UNIREP_CHECK(o_.warmup_start <= 1, "Schedule (", kind, "): warmup_start is the warmup ratio and must be <= 1, got ",
                 o_.warmup_start);
  for (size_t i = 0; i < o_.milestones.size(); ++i) {
    UNIREP_CHECK(o_.milestones[i] >= 0, "Schedule (", kind, "): milestones must be >= 0, got ", o_.milestones[i]);
    UNIREP_CHECK(i == 0 || o_.milestones[i] > o_.milestones[i - 1], "Schedule (", kind,
                 "): milestones must be strictly increasing, got ", to_string(o_.milestones));
  }
}

double Schedule::regular(int64_t step) const {
  switch (o_.kind) {
    case ScheduleOptions::Kind::Step: {
      auto passed = std::upper_bound(o_.milestones.begin(), o_.milestones.end(), step) - o_.milestones.begin();
      return o_.base * std::pow(o_.gamma, double(passed));
    }
    case ScheduleOptions::Kind::Poly: {
      double coeff = std::pow(1.0 - double(step) / double(o_.total_steps), o_.power);
      return (o_.base - o_.final_value) * coeff + o_.final_value;
    }
    default:
      return o_.base;
  }
}

double Schedule::at(int64_t step) const {
  UNIREP_CHECK(step >= 0, "Schedule::at: step must be >= 0, got ", step);
  if (o_.total_steps > 0) step = std::min(step, o_.total_steps - 1);
  const int64_t W = o_.warmup_steps;
  if (o_.kind == ScheduleOptions::Kind::Cosine) {
    if (step < W) {
      // np.linspace(start, base, W): i * ((base - start) / (W - 1)) + start, the last value exactly base.
      if (W == 1) return o_.warmup_start;
      if (step == W - 1) return o_.base;
      double delta = o_.base - o_.warmup_start;
      double div = double(W - 1);
      double inc = delta / div;
      if (inc == 0) return double(step) / div * delta + o_.warmup_start;
      return double(step) * inc + o_.warmup_start;
    }
    const double pi = 3.141592653589793;  // math.pi
    double T = double(o_.total_steps - W);
    double i = double(step - W);
    return o_.final_value + 0.5 * (o_.base - o_.final_value) * (1 + std::cos(pi * i / T));
  }
  double value = regular(step);
  if (step >= W) return value;
  double k = (1 - double(step) / double(W)) * (1 - o_.warmup_start);
  return value * (1 - k);
}

}  // namespace unirep
