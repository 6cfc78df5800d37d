// Schedules against the recipes of the spec. The exact literals are what the upstream formulas give
// in Python/NumPy double precision (utils.cosine_scheduler; mmcv's step, poly and linear warmup),
// so Cosine is checked bit for bit; the closed forms next to them say where the numbers come from.
#include <cmath>

#include <gtest/gtest.h>

#include "core/error.h"
#include "optim/schedule.h"

namespace unirep {
namespace {

using Kind = ScheduleOptions::Kind;

// Spec 6.1/6.2, IN-1K A: 312 steps per epoch, 300 epochs, 20 warmup epochs, lr 4e-3, min 1e-6.
TEST(Schedule, CosineImageNetRecipeEqualsUpstream) {
  ScheduleOptions o;
  o.kind = Kind::Cosine;
  o.base = 4e-3;
  o.final_value = 1e-6;
  o.total_steps = 300 * 312;
  o.warmup_steps = 20 * 312;
  Schedule s(o);
  const int64_t W = 6240, T = 93600 - W;
  EXPECT_EQ(s.at(0), 0.0);
  EXPECT_EQ(s.at(1), 6.411283859592884e-07);
  EXPECT_DOUBLE_EQ(s.at(1), 4e-3 / double(W - 1));
  EXPECT_EQ(s.at(3000), 0.001923385157877865);
  EXPECT_EQ(s.at(W - 1), 4e-3);  // linspace's endpoint
  EXPECT_EQ(s.at(W), 4e-3);      // cos(0) = 1
  EXPECT_EQ(s.at(W + 1), 0.003999999998707098);
  EXPECT_EQ(s.at(W + T / 2), 0.0020005);  // (base + min) / 2
  EXPECT_EQ(s.at(93599), 1.0000012929028863e-06);
  EXPECT_DOUBLE_EQ(s.at(93599), 1e-6 + 0.5 * (4e-3 - 1e-6) * (1 + std::cos(M_PI * double(T - 1) / double(T))));
  EXPECT_EQ(s.at(93600), s.at(93599));  // past the end: the last value
  EXPECT_EQ(s.at(1000000), s.at(93599));
}

TEST(Schedule, CosineWarmupFromAStartValue) {
  ScheduleOptions o;
  o.base = 1e-3;
  o.final_value = 1e-5;
  o.total_steps = 30;
  o.warmup_steps = 7;
  o.warmup_start = 1e-5;
  Schedule s(o);
  // np.linspace(1e-5, 1e-3, 7): steps of 1.65e-4.
  const double want[] = {1e-05, 0.000175, 0.00034, 0.000505, 0.00067, 0.000835, 0.001, 0.001, 0.0009953895432879838};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(s.at(i), want[i]) << i;
}

// Spec 6.2's weight-decay schedule: a cosine from wd to wd_end with no warmup; equal ends give a constant.
TEST(Schedule, WeightDecayCosineWithoutWarmup) {
  ScheduleOptions o;
  o.base = 0.04;
  o.final_value = 0.4;
  o.total_steps = 100;
  Schedule s(o);
  EXPECT_EQ(s.at(0), 0.03999999999999998);  // 0.4 + 0.5 (0.04 - 0.4) 2
  EXPECT_EQ(s.at(50), 0.22);
  EXPECT_EQ(s.at(99), 0.3999111808658317);
  o.final_value = 0.04;
  Schedule flat(o);
  for (int64_t i : {0, 1, 50, 99, 150}) EXPECT_EQ(flat.at(i), 0.04) << i;
}

// Spec 7.5, COCO 3x: lr 1e-4, x0.1 at epochs 27 and 33 of 36, linear warmup over 500 iterations from
// ratio 0.001 (7330 iterations per epoch here).
TEST(Schedule, StepCocoRecipe) {
  const int64_t E = 7330;
  ScheduleOptions o;
  o.kind = Kind::Step;
  o.base = 1e-4;
  o.total_steps = 36 * E;
  o.warmup_steps = 500;
  o.warmup_start = 0.001;
  o.milestones = {27 * E, 33 * E};
  o.gamma = 0.1;
  Schedule s(o);
  EXPECT_EQ(s.at(0), 1.0000000000000009e-07);  // 1e-4 (1 - (1 - 0)(1 - 0.001))
  EXPECT_EQ(s.at(250), 5.005e-05);             // 1e-4 (1 - 0.5 * 0.999)
  EXPECT_EQ(s.at(499), 9.98002e-05);
  EXPECT_EQ(s.at(500), 1e-4);
  EXPECT_EQ(s.at(27 * E - 1), 1e-4);
  EXPECT_EQ(s.at(27 * E), 1e-05);
  EXPECT_EQ(s.at(33 * E - 1), 1e-05);
  EXPECT_EQ(s.at(33 * E), 1.0000000000000002e-06);  // 1e-4 * 0.1^2
  EXPECT_EQ(s.at(36 * E - 1), 1.0000000000000002e-06);
  EXPECT_EQ(s.at(36 * E + 5), s.at(36 * E - 1));
}

// Spec 8.4, ADE20K: 160k iterations, poly power 1 to 0, warmup 1500 iterations from ratio 1e-6. The
// warmup scales the poly value at that iteration (mmcv).
TEST(Schedule, PolyAde20kRecipe) {
  ScheduleOptions o;
  o.kind = Kind::Poly;
  o.base = 1e-4;
  o.final_value = 0;
  o.total_steps = 160000;
  o.warmup_steps = 1500;
  o.warmup_start = 1e-6;
  o.power = 1.0;
  Schedule s(o);
  EXPECT_EQ(s.at(0), 1.0000000000287557e-10);  // 1e-4 * 1e-6
  EXPECT_EQ(s.at(750), 4.976567476562501e-05);  // 1e-4 (1 - 750/160000) (1 - 0.5 (1 - 1e-6))
  EXPECT_EQ(s.at(1499), 9.899708298270875e-05);
  EXPECT_EQ(s.at(1500), 9.90625e-05);  // 1e-4 (1 - 1500/160000)
  EXPECT_EQ(s.at(80000), 5e-05);
  EXPECT_EQ(s.at(159999), 6.249999999985435e-10);  // 1e-4 / 160000
  EXPECT_EQ(s.at(160000), s.at(159999));

  o.base = 0.01, o.final_value = 1e-4, o.total_steps = 1000, o.warmup_steps = 10, o.warmup_start = 0.1, o.power = 0.9;
  Schedule p(o);
  EXPECT_EQ(p.at(100), 0.009104372503221327);  // (0.01 - 1e-4) 0.9^0.9 + 1e-4
  EXPECT_EQ(p.at(999), 0.00011975309691819193);
}

TEST(Schedule, ConstantWithAndWithoutWarmup) {
  ScheduleOptions o;
  o.kind = Kind::Constant;
  o.base = 0.5;
  Schedule forever(o);  // total_steps 0: no end
  EXPECT_EQ(forever.at(0), 0.5);
  EXPECT_EQ(forever.at(123456789), 0.5);
  o.total_steps = 100;
  o.warmup_steps = 4;
  o.warmup_start = 0.2;
  Schedule warm(o);
  EXPECT_DOUBLE_EQ(warm.at(0), 0.5 * 0.2);
  EXPECT_DOUBLE_EQ(warm.at(2), 0.5 * (1 - 0.5 * 0.8));
  EXPECT_EQ(warm.at(4), 0.5);
}

void expect_error(const ScheduleOptions& o, const std::string& field) {
  try {
    Schedule s(o);
    ADD_FAILURE() << "no error, expected one naming " << field;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(Schedule, BadOptionsNameTheField) {
  ScheduleOptions good;
  good.base = 1e-3;
  good.total_steps = 100;
  good.warmup_steps = 10;
  auto with = [&](auto change) {
    ScheduleOptions o = good;
    change(o);
    return o;
  };
  expect_error(with([](ScheduleOptions& o) { o.total_steps = 10; }), "total_steps (10) must exceed warmup_steps (10)");
  expect_error(with([](ScheduleOptions& o) { o.total_steps = 0; o.warmup_steps = 0; }), "total_steps");
  expect_error(with([](ScheduleOptions& o) { o.base = -1; }), "base must be >= 0");
  expect_error(with([](ScheduleOptions& o) { o.final_value = -1e-6; }), "final_value");
  expect_error(with([](ScheduleOptions& o) { o.warmup_steps = -5; }), "warmup_steps must be >= 0");
  expect_error(with([](ScheduleOptions& o) { o.warmup_start = -0.1; }), "warmup_start");
  expect_error(with([](ScheduleOptions& o) { o.kind = Kind::Poly; o.power = -1; }), "power");
  expect_error(with([](ScheduleOptions& o) { o.kind = Kind::Step; o.gamma = -0.1; }), "gamma");
  expect_error(with([](ScheduleOptions& o) { o.kind = Kind::Step; o.warmup_start = 2; }), "warmup_start");
  expect_error(with([](ScheduleOptions& o) { o.kind = Kind::Step; o.milestones = {50, 30}; }),
               "milestones must be strictly increasing, got [50, 30]");
  expect_error(with([](ScheduleOptions& o) { o.kind = Kind::Step; o.milestones = {-1}; }), "milestones");
  Schedule s(good);
  EXPECT_THROW(s.at(-1), Error);
}

}  // namespace
}  // namespace unirep
