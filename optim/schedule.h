// Per-optimizer-step values of the learning rate (or weight decay), step counted from 0, in double.
//
//   Cosine    upstream utils.cosine_scheduler (spec 6.2): W = warmup_steps values
//             np.linspace(warmup_start, base, W) (endpoint included), then for i = 0..T-1,
//             T = total - W: final + 0.5 (base - final) (1 + cos(pi i / T)). The weight-decay
//             schedule is the same with W = 0.
//   Step      mmcv step policy (spec 7.5): base * gamma^(number of milestones <= step).
//   Poly      mmcv poly policy (spec 8.4): (base - final) (1 - step / total)^power + final.
//   Constant  base.
// Step, Poly and Constant take mmcv's linear warmup, which scales the regular value at that step:
// for step < W, value * (1 - (1 - step / W)(1 - warmup_start)), warmup_start being the ratio.
// Steps at or past total_steps give the value of the last step (total_steps - 1); a Constant
// schedule may leave total_steps 0 (no end).
#pragma once
#include <cstdint>
#include <vector>

namespace unirep {

struct ScheduleOptions {
  enum class Kind { Cosine, Step, Poly, Constant } kind = Kind::Cosine;
  double base = 0;
  double final_value = 1e-6;  // Cosine and Poly: the value the schedule ends at (min_lr)
  int64_t total_steps = 0;
  int64_t warmup_steps = 0;
  double warmup_start = 0;  // Cosine: the first warmup value; Step/Poly/Constant: the warmup ratio in [0, 1]
  std::vector<int64_t> milestones;  // Step: strictly increasing steps
  double gamma = 0.1;               // Step
  double power = 1.0;               // Poly
};

class Schedule {
 public:
  explicit Schedule(ScheduleOptions options);  // throws naming the offending field
  double at(int64_t step) const;
  const ScheduleOptions& options() const { return o_; }

 private:
  double regular(int64_t step) const;  // without warmup (Step, Poly, Constant)
  ScheduleOptions o_;
};

}  // namespace unirep
