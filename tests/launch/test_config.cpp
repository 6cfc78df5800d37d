// Training configs (launch/config.h): defaults, overrides, the resolved-config round trip, every error
// kind with the exact key and position in its message, and the shipped experiments/*.yaml files.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include "launch/config.h"
#include "layers/unireplknet/config.h"
#include "tests/datasets/helpers.h"

namespace unirep {
namespace {

using testing_data::error_of;
namespace fs = std::filesystem;

const std::string kMinimal = "model:\n  variant: a\ndata:\n  path: data/x\n";

TrainConfig parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return parse_train_config(text, overrides, "cfg.yaml");
}

std::string parse_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { parse(text, overrides); });
}

fs::path experiments_dir() { return fs::path(UNIREP_SOURCE_DIR) / "experiments"; }

TrainConfig experiment(const std::string& relative) {
  return load_train_config((experiments_dir() / relative).string());
}

TEST(TrainConfig, DefaultsAreUpstreamMainPy) {
  TrainConfig c = parse(kMinimal);
  TrainConfig expected;
  expected.model.variant = "a";
  expected.data.path = "data/x";
  EXPECT_EQ(c, expected);
  // Spec 6.2-6.4: AdamW (0.9, 0.999), eps 1e-8, lr 4e-3, wd 0.05, min_lr 1e-6, EMA decay 0.9999,
  // mixup 0.8 / cutmix 1.0 / switch 0.5, smoothing 0.1, erasing 0.25, crop_pct 224/256.
  EXPECT_EQ(c.optimizer.name, "adamw");
  EXPECT_EQ(c.optimizer.betas, (std::vector<double>{0.9, 0.999}));
  EXPECT_EQ(c.optimizer.eps, 1e-8);
  EXPECT_EQ(c.optimizer.lr, 4e-3);
  EXPECT_EQ(c.optimizer.weight_decay, 0.05);
  EXPECT_EQ(c.optimizer.weight_decay_end, -1);
  EXPECT_EQ(c.schedule.min_lr, 1e-6);
  EXPECT_EQ(c.ema.decay, 0.9999);
  EXPECT_EQ(c.augment.mixup, 0.8);
  EXPECT_EQ(c.augment.cutmix, 1.0);
  EXPECT_EQ(c.augment.mixup_switch_prob, 0.5);
  EXPECT_EQ(c.augment.label_smoothing, 0.1);
  EXPECT_EQ(c.augment.random_erasing, 0.25);
  EXPECT_EQ(c.augment.crop_pct, 224.0 / 256.0);
  EXPECT_EQ(c.augment.rand_augment, "rand-m9-mstd0.5-inc1");
  EXPECT_EQ(c.data.mean, (std::vector<double>{0.485, 0.456, 0.406}));
  EXPECT_EQ(c.train.epochs, 300);
  EXPECT_EQ(c.train.max_steps, 0);
}

TEST(TrainConfig, EmptySectionsAndValuesMeanDefaults) {
  TrainConfig c = parse(kMinimal + "ema:\ncheckpoint:\n  resume:\n");
  EXPECT_FALSE(c.ema.enabled);
  EXPECT_EQ(c.checkpoint.resume, "");
}

TEST(TrainConfig, ResolvedYamlRoundTrips) {
  TrainConfig c;
  c.model.variant = "t";
  c.model.kernel_sizes = default_kernel_sizes({3, 3, 18, 3});
  c.model.kernel_sizes[2][1] = 5;
  c.model.init = "weights/t in22k.h5";
  c.model.init_strict = false;
  c.model.layer_scale_init_value = -1e-300;
  c.data.path = "data/with: colon # and hash";
  c.data.train_split = "true";  // a string that reads as a boolean unquoted
  c.data.mean = {0.1};
  c.data.std = {1.0 / 3.0};
  c.augment.ratio = {0.75, 4.0 / 3.0};
  c.augment.rand_augment = "";
  c.optimizer.lr = 1.0 / 3.0;
  c.optimizer.betas = {0.9, 0.95};
  c.optimizer.weight_decay_end = 0.5;
  c.schedule.name = "step";
  c.schedule.milestones = {30, 60, 90};
  c.train.max_steps = 123456789012;
  c.checkpoint.resume = "auto";
  c.precision.loss_scale = 1e20;
  std::string text = to_yaml(c);
  TrainConfig back = parse_train_config(text);
  EXPECT_EQ(back, c) << text;
  EXPECT_EQ(to_yaml(back), text);
  EXPECT_EQ(parse_train_config(to_yaml(parse(kMinimal))), parse(kMinimal));
}

TEST(TrainConfig, ResolvedYamlListsEveryKeyInSchemaOrder) {
  std::string text = to_yaml(parse(kMinimal));
  std::vector<std::string> keys;
  for (const auto& section : YAML::Load(text))
    for (const auto& entry : section.second) keys.push_back(section.first.Scalar() + "." + entry.first.Scalar());
  EXPECT_EQ(keys, train_config_keys());
  ASSERT_EQ(keys.size(), 80u);
  EXPECT_EQ(keys.front(), "model.variant");
  EXPECT_EQ(keys.back(), "distributed.timeout_s");
  // Floats keep a '.' so YAML 1.1 readers see floats; strings are quoted.
  EXPECT_HAS(text, "  lr: 0.004\n");
  EXPECT_HAS(text, "  eps: 1.0e-08\n");
  EXPECT_HAS(text, "  loss_scale: 65536.0\n");
  EXPECT_HAS(text, "  betas: [0.9, 0.999]\n");
  EXPECT_HAS(text, "  milestones: []\n");
  EXPECT_HAS(text, "  variant: \"a\"\n");
  EXPECT_HAS(text, "  epochs: 300\n");
  EXPECT_HAS(text, "  with_cp: false\n");
}

TEST(TrainConfig, OverridesApplyAfterTheFile) {
  TrainConfig c = parse(kMinimal + "optimizer:\n  lr: 1e-3\n",
                        {"optimizer.lr=2e-3", "optimizer.betas=[0.9,0.95]", "train.max_steps=10",
                         "schedule.milestones=[30, 60]", "model.kernel_sizes=[[3,3],[13,13],[13,13,13,13,13,3],[13,0]]",
                         "data.mean=0.5", "data.std=[0.25]", "model.init=", "augment.rand_augment=rand-m7-n3-inc1",
                         "data.path=elsewhere=with=equals", "ema.enabled=true"});
  EXPECT_EQ(c.optimizer.lr, 2e-3);
  EXPECT_EQ(c.optimizer.betas, (std::vector<double>{0.9, 0.95}));
  EXPECT_EQ(c.train.max_steps, 10);
  EXPECT_EQ(c.schedule.milestones, (std::vector<int64_t>{30, 60}));
  EXPECT_EQ(c.model.kernel_sizes,
            (std::vector<std::vector<int64_t>>{{3, 3}, {13, 13}, {13, 13, 13, 13, 13, 3}, {13, 0}}));
  EXPECT_EQ(c.data.mean, std::vector<double>{0.5});
  EXPECT_EQ(c.data.std, std::vector<double>{0.25});
  EXPECT_EQ(c.model.init, "");
  EXPECT_EQ(c.augment.rand_augment, "rand-m7-n3-inc1");
  EXPECT_EQ(c.data.path, "elsewhere=with=equals");
  EXPECT_TRUE(c.ema.enabled);
}

TEST(TrainConfig, OverrideSuppliesARequiredKey) {
  TrainConfig c = parse("model:\n  variant: s\n", {"data.path=data/imagenet"});
  EXPECT_EQ(c.data.path, "data/imagenet");
}

TEST(TrainConfigErrors, UnknownKeyNamesFileLineColumnAndAllowedKeys) {
  std::string text = kMinimal + "optimizer:\n  lr: 1e-3\n  lrr: 0.1\n";
  EXPECT_EQ(parse_error(text),
            "cfg.yaml:7:3: unknown key 'optimizer.lrr' (allowed keys in 'optimizer': name, lr, betas, eps, momentum, "
            "nesterov, weight_decay, weight_decay_end, layer_decay, layer_decay_rule, layer_decay_num_layers, "
            "clip_grad)");
}

TEST(TrainConfigErrors, UnknownSection) {
  EXPECT_EQ(parse_error(kMinimal + "optimiser:\n  lr: 1\n"),
            "cfg.yaml:5:1: unknown section 'optimiser' (allowed sections: model, data, augment, optimizer, "
            "schedule, train, ema, precision, checkpoint, logging, distributed)");
  EXPECT_HAS(parse_error(kMinimal + "- a\n"), "cfg.yaml:");
  EXPECT_EQ(parse_error("- model\n"),
            "cfg.yaml:1:1: expected a mapping of sections (model, data, augment, optimizer, schedule, train, ema, "
            "precision, checkpoint, logging, distributed); got a list");
  EXPECT_EQ(parse_error(kMinimal + "ema: 3\n"),
            "cfg.yaml:5:6: section 'ema': expected a mapping of keys (enabled, decay, eval); got '3'");
}

TEST(TrainConfigErrors, WrongType) {
  EXPECT_EQ(parse_error(kMinimal + "optimizer:\n  lr: abc\n"),
            "cfg.yaml:6:7: optimizer.lr: expected a number > 0; got 'abc'");
  EXPECT_EQ(parse_error(kMinimal + "train:\n  batch_size: [1, 2]\n"),
            "cfg.yaml:6:15: train.batch_size: expected an integer >= 1; got a list");
  EXPECT_EQ(parse_error(kMinimal + "train:\n  epochs: 2.5\n"),
            "cfg.yaml:6:11: train.epochs: expected an integer >= 1; got '2.5'");
  EXPECT_HAS(parse_error("model:\n  variant: a\n  with_cp: yes\ndata:\n  path: x\n"),
             "cfg.yaml:3:12: model.with_cp: expected true or false; got 'yes'");
  EXPECT_EQ(parse_error(kMinimal + "optimizer:\n  betas: 0.9\n"),
            "cfg.yaml:6:10: optimizer.betas: expected a list of 2 numbers in [0, 1); got '0.9'");
  EXPECT_EQ(parse_error(kMinimal + "train:\n  batch_size:\n"),
            "cfg.yaml:6:3: train.batch_size: expected an integer >= 1; got nothing");
}

TEST(TrainConfigErrors, OutOfRange) {
  EXPECT_EQ(parse_error(kMinimal + "train:\n  batch_size: -3\n"),
            "cfg.yaml:6:15: train.batch_size: expected an integer >= 1; got '-3'");
  EXPECT_HAS(parse_error("model: {variant: a, drop_path_rate: 1.0}\ndata: {path: x}\n"),
             "model.drop_path_rate: expected a number in [0, 1); got '1.0'");
  EXPECT_EQ(parse_error(kMinimal + "optimizer:\n  betas: [0.9, 1.5]\n"),
            "cfg.yaml:6:16: optimizer.betas[1]: expected a number in [0, 1); got '1.5'");
  EXPECT_EQ(parse_error(kMinimal + "optimizer:\n  betas: [0.9, 0.99, 0.999]\n"),
            "cfg.yaml:6:10: optimizer.betas: expected a list of 2 numbers in [0, 1); got a list (3 numbers)");
  EXPECT_HAS(parse_error(kMinimal, {"optimizer.weight_decay_end=-0.5"}),
             "--set optimizer.weight_decay_end: expected a number >= 0 or -1; got '-0.5'");
  EXPECT_EQ(parse(kMinimal, {"optimizer.weight_decay_end=-1"}).optimizer.weight_decay_end, -1);
  EXPECT_HAS(parse_error(kMinimal, {"data.std=[0.2, 0.3]"}),
             "--set data.std: expected a list of 1 or 3 numbers > 0; got a list (2 numbers)");
  EXPECT_HAS(parse_error(kMinimal, {"ema.decay=1"}), "--set ema.decay: expected a number in (0, 1); got '1'");
  EXPECT_HAS(parse_error(kMinimal, {"optimizer.lr=inf"}), "--set optimizer.lr: expected a number > 0; got 'inf'");
  EXPECT_HAS(parse_error(kMinimal, {"model.kernel_sizes=[[3],[13],[13],[13,4]]"}),
             "--set model.kernel_sizes[3][1]: expected a kernel size: 0 (no mixer), 3, 5, 7, 9, 11, 13, 15 or 17; "
             "got '4'");
  EXPECT_HAS(parse_error(kMinimal, {"model.kernel_sizes=[[3]]"}),
             "--set model.kernel_sizes: expected [] (the variant's table) or a list of 4 lists of kernel sizes, one "
             "per stage; got a list (1 lists)");
}

TEST(TrainConfigErrors, BadChoiceListsTheAllowedValues) {
  EXPECT_EQ(parse_error(kMinimal + "optimizer:\n  name: adam\n"),
            "cfg.yaml:6:9: optimizer.name: expected one of adamw, sgd; got 'adam'");
  EXPECT_EQ(parse_error("model:\n  variant: q\n"),
            "cfg.yaml:2:12: model.variant: expected one of a, f, p, n, t, s, b, l, xl; got 'q'");
  EXPECT_HAS(parse_error(kMinimal, {"precision.dtype=fp16"}),
             "--set precision.dtype: expected one of float32, bfloat16, float16; got 'fp16'");
  EXPECT_HAS(parse_error(kMinimal, {"augment.rand_augment=rand-m9-inc0"}),
             "--set augment.rand_augment: expected \"\" (off) or a timm RandAugment string such as "
             "rand-m9-mstd0.5-inc1; got 'rand-m9-inc0' (parse_rand_augment: ");
}

TEST(TrainConfigErrors, Overrides) {
  EXPECT_HAS(parse_error(kMinimal, {"optimizer.lrr=1"}),
             "--set: unknown key 'optimizer.lrr' (allowed keys in 'optimizer': name, lr, betas,");
  EXPECT_HAS(parse_error(kMinimal, {"optimiser.lr=1"}), "--set: unknown section 'optimiser' in 'optimiser.lr'");
  EXPECT_HAS(parse_error(kMinimal, {"ema=1"}), "--set: 'ema' is a section; set one of its keys (enabled, decay, eval)");
  EXPECT_EQ(parse_error(kMinimal, {"foo"}), "--set expects key=value, got 'foo'");
  EXPECT_EQ(parse_error(kMinimal, {"=3"}), "--set expects key=value, got '=3'");
  EXPECT_EQ(parse_error(kMinimal, {"optimizer.lr=abc"}), "--set optimizer.lr: expected a number > 0; got 'abc'");
  EXPECT_HAS(parse_error(kMinimal, {"optimizer.betas=[0.9"}), "--set optimizer.betas: cannot read '[0.9' as a YAML value");
}

TEST(TrainConfigErrors, MissingRequiredKeysAndFiles) {
  EXPECT_EQ(parse_error("data:\n  path: x\n"),
            "cfg.yaml: missing required key 'model.variant' (one of a, f, p, n, t, s, b, l, xl; in the file or as "
            "--set model.variant=...)");
  EXPECT_EQ(parse_error("model:\n  variant: a\n"),
            "cfg.yaml: missing required key 'data.path' (the dataset folder; in the file or as --set data.path=...)");
  EXPECT_HAS(parse_error(""), "missing required key 'model.variant'");
  EXPECT_EQ(error_of([] { load_train_config("/nonexistent/x.yaml"); }),
            "config file '/nonexistent/x.yaml' does not exist");
  EXPECT_EQ(parse_error("model:\n  variant: a\n  variant: b\ndata:\n  path: x\n"),
            "cfg.yaml:3:3: key 'model.variant' appears twice");
  EXPECT_HAS(parse_error("model: [a\n"), "cfg.yaml:");
  EXPECT_HAS(parse_error("model: [a\n"), ": invalid YAML: ");
}

TEST(TrainConfigErrors, CrossFieldRules) {
  EXPECT_EQ(parse_error(kMinimal + "train:\n  batch_size: 127\n"),
            "cfg.yaml:6:3: train.batch_size: mixup/cutmix (augment.mixup 0.8, augment.cutmix 1) pair each image with "
            "its mirror in the batch and need an even batch size; got 127");
  EXPECT_EQ(parse(kMinimal, {"train.batch_size=127", "augment.mixup=0", "augment.cutmix=0"}).train.batch_size, 127);
  EXPECT_EQ(parse_error(kMinimal, {"ema.eval=true"}),
            "--set ema.eval: evaluating the EMA weights requires ema.enabled: true");
  EXPECT_EQ(parse_error(kMinimal, {"schedule.name=step"}),
            "--set schedule.name: step requires schedule.milestones (epochs at which lr is multiplied by gamma)");
  EXPECT_HAS(parse_error(kMinimal, {"schedule.milestones=[60, 30]"}),
             "schedule.milestones: expected increasing epochs; got [60, 30]");
  EXPECT_EQ(parse_error(kMinimal, {"model.kernel_sizes=[[3,3],[13,13],[13,13,13],[13,13]]"}),
            "--set model.kernel_sizes[2]: variant 'a' has 6 blocks in stage 2, got 3 kernel sizes");
  EXPECT_HAS(parse_error(kMinimal, {"data.mean=[0.5]"}),
             "cfg.yaml: data.mean has 1 values but data.std has 3 (expected one per input channel in both)");
  EXPECT_HAS(parse_error(kMinimal, {"augment.scale=[1.0, 0.5]"}),
             "augment.scale: expected [min, max] with min <= max; got [1, 0.5]");
  EXPECT_HAS(parse_error(kMinimal, {"train.device=cpu", "distributed.backend=nccl"}),
             "distributed.backend: nccl needs GPUs, but train.device is cpu");
}

std::vector<fs::path> experiment_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(experiments_dir()))
    if (entry.path().extension() == ".yaml") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

TEST(TrainConfigExperiments, EveryFileParses) {
  std::vector<fs::path> files = experiment_files();
  EXPECT_EQ(files.size(), 16u);  // 2 Fashion-MNIST, 6 IN-1K, 4 IN-22K, 4 22K->1K
  for (const fs::path& f : files) {
    SCOPED_TRACE(f.string());
    TrainConfig c = load_train_config(f.string());
    EXPECT_EQ(parse_train_config(to_yaml(c)), c);
    // The variant in the file name is the one configured.
    std::string stem = f.stem().string();
    EXPECT_EQ(stem.substr(0, 12), "unireplknet_");
    EXPECT_EQ(stem.substr(12, stem.find('_', 12) - 12), c.model.variant);
  }
}

TEST(TrainConfigExperiments, ImageNetRecipesCarrySpecNumbers) {
  // Spec 6.1, T 1K: 4 GPUs x 128 x 8 = 4096, lr 4e-3, 300 epochs, warmup 20, drop path 0.2, mixup 0.8, cutmix 1.0.
  TrainConfig t = experiment("imagenet/unireplknet_t_1k.yaml");
  EXPECT_EQ(t.model.variant, "t");
  EXPECT_EQ(t.model.num_classes, 1000);
  EXPECT_EQ(4 * t.train.batch_size * t.train.update_freq, 4096);
  EXPECT_EQ(t.train.batch_size, 128);
  EXPECT_EQ(t.optimizer.lr, 4e-3);
  EXPECT_EQ(t.train.epochs, 300);
  EXPECT_EQ(t.schedule.warmup_epochs, 20);
  EXPECT_EQ(t.model.drop_path_rate, 0.2);
  EXPECT_EQ(t.augment.mixup, 0.8);
  EXPECT_EQ(t.augment.cutmix, 1.0);
  EXPECT_EQ(t.data.input_size, 224);
  // L 22K->1K: 4 GPUs x 64 x 2 = 512, lr 5e-5, 20 epochs, no warmup, wd 1e-8, drop path 0.3, no mixing,
  // smoothing 0.3, EMA evaluated, layer decay 0.8, head init 0.001, 384 input.
  TrainConfig l = experiment("imagenet/unireplknet_l_22kto1k.yaml");
  EXPECT_EQ(4 * l.train.batch_size * l.train.update_freq, 512);
  EXPECT_EQ(l.train.batch_size, 64);
  EXPECT_EQ(l.optimizer.lr, 5e-5);
  EXPECT_EQ(l.train.epochs, 20);
  EXPECT_EQ(l.schedule.warmup_epochs, 0);
  EXPECT_EQ(l.optimizer.weight_decay, 1e-8);
  EXPECT_EQ(l.model.drop_path_rate, 0.3);
  EXPECT_EQ(l.augment.mixup, 0);
  EXPECT_EQ(l.augment.cutmix, 0);
  EXPECT_EQ(l.augment.label_smoothing, 0.3);
  EXPECT_TRUE(l.ema.enabled && l.ema.eval);
  EXPECT_EQ(l.optimizer.layer_decay, 0.8);
  EXPECT_EQ(l.model.head_init_scale, 0.001);
  EXPECT_EQ(l.data.input_size, 384);
  EXPECT_FALSE(l.model.init.empty());
  EXPECT_FALSE(l.model.init_strict);
  // XL 22K: 32 GPUs x 32 x 4 = 4096, lr 1e-3, 90 epochs, warmup 5, drop path 0.2, 192 input, 21841 classes.
  TrainConfig xl = experiment("imagenet/unireplknet_xl_22k.yaml");
  EXPECT_EQ(32 * xl.train.batch_size * xl.train.update_freq, 4096);
  EXPECT_EQ(xl.optimizer.lr, 1e-3);
  EXPECT_EQ(xl.train.epochs, 90);
  EXPECT_EQ(xl.schedule.warmup_epochs, 5);
  EXPECT_EQ(xl.model.drop_path_rate, 0.2);
  EXPECT_EQ(xl.data.input_size, 192);
  EXPECT_EQ(xl.model.num_classes, 21841);
}

TEST(TrainConfigExperiments, FashionMnistQuickstart) {
  TrainConfig c = experiment("fashion_mnist/unireplknet_a.yaml");
  EXPECT_EQ(c.model.in_chans, 1);
  EXPECT_EQ(c.model.num_classes, 10);
  EXPECT_EQ(c.data.eval_split, "test");
  EXPECT_EQ(c.data.input_size, 32);
  EXPECT_EQ(c.data.mean, std::vector<double>{0.2860});
  EXPECT_EQ(c.data.std, std::vector<double>{0.3530});
  EXPECT_EQ(c.augment.pipeline, "small");
  EXPECT_EQ(c.augment.rand_augment, "");
  EXPECT_EQ(c.augment.mixup + c.augment.cutmix + c.augment.random_erasing, 0);
  EXPECT_EQ(c.schedule.warmup_steps, 200);
  EXPECT_EQ(c.train.epochs, 5);
  EXPECT_EQ(c.precision.dtype, "float32");
  EXPECT_EQ(experiment("fashion_mnist/unireplknet_a_long.yaml").precision.dtype, "bfloat16");
}

TEST(TrainConfigExperiments, ReadmeDocumentsEveryKey) {
  std::ifstream in(experiments_dir() / "README.md");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string readme = buffer.str();
  for (const std::string& dotted : train_config_keys()) {
    std::string section = dotted.substr(0, dotted.find('.')), key = dotted.substr(dotted.find('.') + 1);
    size_t start = readme.find("### `" + section + "`");
    ASSERT_NE(start, std::string::npos) << "no section heading for " << section;
    size_t end = readme.find("\n### ", start + 1);
    EXPECT_NE(readme.substr(start, end - start).find("| `" + key + "` |"), std::string::npos)
        << dotted << " is not in the table of " << section;
  }
}

}  // namespace
}  // namespace unirep
