// The schema is one table of fields built over a TrainConfig: each field knows its section, key, how
// to read a YAML node into the struct member (checking type and range) and how to write it back.
// Reading a file, applying --set overrides, listing the allowed keys in a message and emitting the
// resolved config all walk that one table, so they cannot disagree about names or order.
#include "launch/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "core/error.h"
#include "datasets/rand_augment.h"
#include "layers/unireplknet/config.h"

namespace unirep {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The shortest decimal that reads back as the same double ("0.1", "1e-06").
std::string shortest(double v) {
  char buf[32];
  auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
  return std::string(buf, end);
}

// shortest() with a '.' in the mantissa ("1.0e-06", "300.0"), so YAML 1.1 readers such as PyYAML
// also read a float.
std::string yaml_float(double v) {
  std::string s = shortest(v);
  if (s.find('.') == std::string::npos) {
    size_t e = s.find('e');
    s.insert(e == std::string::npos ? s.size() : e, ".0");
  }
  return s;
}

std::string join(const std::vector<std::string>& items, const std::string& sep = ", ") {
  std::string s;
  for (size_t i = 0; i < items.size(); ++i) s += (i ? sep : "") + items[i];
  return s;
}

// Allowed numbers: an interval, open or closed at either end, plus optionally one sentinel value
// outside it (weight_decay_end's -1).
struct Bounds {
  double lo = -kInf, hi = kInf;
  bool lo_open = false, hi_open = false;
  std::optional<double> sentinel;

  bool contains(double v) const {
    if (sentinel && v == *sentinel) return true;
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
  // " >= 0", " in [0, 1)", "" for any number.
  std::string text() const {
    std::string s;
    if (hi != kInf)
      s = std::string(" in ") + (lo_open ? "(" : "[") + shortest(lo) + ", " + shortest(hi) + (hi_open ? ")" : "]");
    else if (lo != -kInf)
      s = (lo_open ? " > " : " >= ") + shortest(lo);
    if (sentinel) s += " or " + shortest(*sentinel);
    return s;
  }
};

Bounds any_number() { return Bounds(); }
Bounds at_least(double lo) {
  Bounds b;
  b.lo = lo;
  return b;
}
Bounds above(double lo) {
  Bounds b = at_least(lo);
  b.lo_open = true;
  return b;
}
// brackets: "[]", "[)", "(]" or "()", as in interval notation.
Bounds interval(double lo, double hi, const char* brackets) {
  Bounds b;
  b.lo = lo, b.hi = hi, b.lo_open = brackets[0] == '(', b.hi_open = brackets[1] == ')';
  return b;
}
// >= lo, or exactly `sentinel` (a value with a special meaning).
Bounds at_least_or(double lo, double sentinel) {
  Bounds b = at_least(lo);
  b.sentinel = sentinel;
  return b;
}

// What a node holds, for the "got ..." of a message.
std::string got(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  return "'" + n.Scalar() + "'";
}

// The message prefix for a node: "file:line:col: " in a file, "--set " for an override. Nodes
// without a position (an empty value) take the position of their key.
struct Where {
  std::string source;  // empty for an override
  YAML::Mark fallback;

  std::string operator()(const YAML::Node& n) const {
    if (source.empty()) return "--set ";
    YAML::Mark m = n.IsDefined() && !n.IsNull() ? n.Mark() : fallback;
    if (m.line < 0) m = fallback;
    return source + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": ";
  }
};

[[noreturn]] void fail(const Where& where, const YAML::Node& n, const std::string& key, const std::string& expected,
                       const std::string& detail = "") {
  throw Error(where(n) + key + ": expected " + expected + "; got " + got(n) + detail);
}

std::string scalar_text(const YAML::Node& n) {
  std::string s = n.Scalar();
  return !s.empty() && s[0] == '+' ? s.substr(1) : s;
}

std::optional<int64_t> to_integer(const YAML::Node& n) {
  if (!n.IsScalar()) return std::nullopt;
  std::string s = scalar_text(n);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> to_number(const YAML::Node& n) {
  if (!n.IsScalar()) return std::nullopt;
  std::string s = scalar_text(n);
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<bool> to_bool(const YAML::Node& n) {
  if (!n.IsScalar()) return std::nullopt;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

// The elements of a list node; a lone scalar counts as a list of one where one element is allowed
// (mean: 0.5).
std::optional<std::vector<YAML::Node>> to_list(const YAML::Node& n, bool scalar_as_one) {
  std::vector<YAML::Node> items;
  if (n.IsSequence()) {
    for (const YAML::Node& item : n) items.push_back(item);
  } else if (scalar_as_one && n.IsScalar()) {
    items.push_back(n);
  } else {
    return std::nullopt;
  }
  return items;
}

struct Field {
  std::string section, key;
  std::function<void(const YAML::Node&, const Where&)> read;  // throws naming section.key
  std::function<void(YAML::Emitter&)> write;
  std::string dotted() const { return section + "." + key; }
};

// The table of fields, bound to the members of one TrainConfig.
class Schema {
 public:
  void section(const std::string& name) {
    section_ = name;
    sections_.push_back(name);
  }

  void integer(const std::string& key, int64_t& value, Bounds bounds) {
    std::string dotted = section_ + "." + key, expected = "an integer" + bounds.text();
    add(key, [&value, dotted, expected, bounds](const YAML::Node& n, const Where& where) {
      std::optional<int64_t> v = to_integer(n);
      if (!v || !bounds.contains(double(*v))) fail(where, n, dotted, expected);
      value = *v;
    }, [&value](YAML::Emitter& out) { out << value; });
  }

  void number(const std::string& key, double& value, Bounds bounds) {
    std::string dotted = section_ + "." + key, expected = "a number" + bounds.text();
    add(key, [&value, dotted, expected, bounds](const YAML::Node& n, const Where& where) {
      std::optional<double> v = to_number(n);
      if (!v || !bounds.contains(*v)) fail(where, n, dotted, expected);
      value = *v;
    }, [&value](YAML::Emitter& out) { out << yaml_float(value); });
  }

  void boolean(const std::string& key, bool& value) {
    std::string dotted = section_ + "." + key;
    add(key, [&value, dotted](const YAML::Node& n, const Where& where) {
      std::optional<bool> v = to_bool(n);
      if (!v) fail(where, n, dotted, "true or false");
      value = *v;
    }, [&value](YAML::Emitter& out) { out << (value ? "true" : "false"); });
  }

  // Free text; an empty value (`init:`) is "". `check` returns why a value is refused, "" if fine.
  void text(const std::string& key, std::string& value, const std::string& expected = "a string",
            std::function<std::string(const std::string&)> check = {}) {
    std::string dotted = section_ + "." + key;
    add(key, [&value, dotted, expected, check](const YAML::Node& n, const Where& where) {
      if (!n.IsNull() && !n.IsScalar()) fail(where, n, dotted, expected);
      std::string v = n.IsNull() ? "" : n.Scalar();
      std::string why = check ? check(v) : "";
      if (!why.empty()) fail(where, n, dotted, expected, " (" + why + ")");
      value = v;
    }, [&value](YAML::Emitter& out) { out << YAML::DoubleQuoted << value; });
  }

  void choice(const std::string& key, std::string& value, const std::vector<std::string>& allowed) {
    std::string dotted = section_ + "." + key, expected = "one of " + join(allowed);
    add(key, [&value, dotted, expected, allowed](const YAML::Node& n, const Where& where) {
      bool ok = n.IsScalar() && std::find(allowed.begin(), allowed.end(), n.Scalar()) != allowed.end();
      if (!ok) fail(where, n, dotted, expected);
      value = n.Scalar();
    }, [&value](YAML::Emitter& out) { out << YAML::DoubleQuoted << value; });
  }

  // A list of numbers whose length is one of `lengths` (any length when empty).
  void numbers(const std::string& key, std::vector<double>& value, const std::vector<size_t>& lengths,
               Bounds bounds) {
    std::string dotted = section_ + "." + key;
    std::vector<std::string> counts;
    for (size_t l : lengths) counts.push_back(std::to_string(l));
    std::string element = "a number" + bounds.text();
    std::string expected = "a list of " + (counts.empty() ? "" : join(counts, " or ") + " ") + "numbers" + bounds.text();
    bool scalar_as_one = std::find(lengths.begin(), lengths.end(), size_t(1)) != lengths.end();
    add(key, [&value, dotted, expected, element, lengths, bounds, scalar_as_one](const YAML::Node& n,
                                                                                const Where& where) {
      std::optional<std::vector<YAML::Node>> items = to_list(n, scalar_as_one);
      bool length_ok = items && (lengths.empty() ||
                                 std::find(lengths.begin(), lengths.end(), items->size()) != lengths.end());
      if (!length_ok) fail(where, n, dotted, expected, items ? " (" + std::to_string(items->size()) + " numbers)" : "");
      std::vector<double> v;
      for (size_t i = 0; i < items->size(); ++i) {
        std::optional<double> x = to_number((*items)[i]);
        if (!x || !bounds.contains(*x)) fail(where, (*items)[i], dotted + "[" + std::to_string(i) + "]", element);
        v.push_back(*x);
      }
      value = v;
    }, [&value](YAML::Emitter& out) {
      out << YAML::Flow << YAML::BeginSeq;
      for (double x : value) out << yaml_float(x);
      out << YAML::EndSeq;
    });
  }

  void integers(const std::string& key, std::vector<int64_t>& value, Bounds bounds) {
    std::string dotted = section_ + "." + key;
    std::string element = "an integer" + bounds.text(), expected = "a list of integers" + bounds.text();
    add(key, [&value, dotted, expected, element, bounds](const YAML::Node& n, const Where& where) {
      std::optional<std::vector<YAML::Node>> items = to_list(n, false);
      if (!items) fail(where, n, dotted, expected);
      std::vector<int64_t> v;
      for (size_t i = 0; i < items->size(); ++i) {
        std::optional<int64_t> x = to_integer((*items)[i]);
        if (!x || !bounds.contains(double(*x))) fail(where, (*items)[i], dotted + "[" + std::to_string(i) + "]", element);
        v.push_back(*x);
      }
      value = v;
    }, [&value](YAML::Emitter& out) { out << YAML::Flow << value; });
  }

  // Per-stage lists of block kernel sizes: [] or 4 lists. The sizes the model builds: 0 (no mixer),
  // 3 and 5 (plain depth-wise conv), 7..17 odd (Dilated Reparam Block, spec 2.5).
  void kernel_table(const std::string& key, std::vector<std::vector<int64_t>>& value) {
    std::string dotted = section_ + "." + key;
    add(key, [&value, dotted](const YAML::Node& n, const Where& where) {
      std::optional<std::vector<YAML::Node>> stages = to_list(n, false);
      if (!stages || (!stages->empty() && stages->size() != 4))
        fail(where, n, dotted, "[] (the variant's table) or a list of 4 lists of kernel sizes, one per stage",
             stages ? " (" + std::to_string(stages->size()) + " lists)" : "");
      std::vector<std::vector<int64_t>> v;
      for (size_t s = 0; s < stages->size(); ++s) {
        std::string stage_key = dotted + "[" + std::to_string(s) + "]";
        std::optional<std::vector<YAML::Node>> blocks = to_list((*stages)[s], false);
        if (!blocks) fail(where, (*stages)[s], stage_key, "a list of kernel sizes, one per block");
        v.emplace_back();
        for (size_t b = 0; b < blocks->size(); ++b) {
          std::optional<int64_t> k = to_integer((*blocks)[b]);
          bool ok = k && (*k == 0 || (*k >= 3 && *k <= 17 && *k % 2 == 1));
          if (!ok) fail(where, (*blocks)[b], stage_key + "[" + std::to_string(b) + "]",
                        "a kernel size: 0 (no mixer), 3, 5, 7, 9, 11, 13, 15 or 17");
          v.back().push_back(*k);
        }
      }
      value = v;
    }, [&value](YAML::Emitter& out) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const std::vector<int64_t>& stage : value) out << YAML::Flow << stage;
      out << YAML::EndSeq;
    });
  }

  const std::vector<Field>& fields() const { return fields_; }
  const std::vector<std::string>& sections() const { return sections_; }
  bool has_section(const std::string& name) const {
    return std::find(sections_.begin(), sections_.end(), name) != sections_.end();
  }
  std::vector<std::string> keys(const std::string& section) const {
    std::vector<std::string> keys;
    for (const Field& f : fields_)
      if (f.section == section) keys.push_back(f.key);
    return keys;
  }
  const Field* find(const std::string& section, const std::string& key) const {
    for (const Field& f : fields_)
      if (f.section == section && f.key == key) return &f;
    return nullptr;
  }

 private:
  template <class Read, class Write> void add(const std::string& key, Read read, Write write) {
    fields_.push_back({section_, key, read, write});
  }

  std::string section_;
  std::vector<std::string> sections_;
  std::vector<Field> fields_;
};

std::string nonempty(const std::string& v) { return v.empty() ? "an empty string" : ""; }

std::string rand_augment_spec(const std::string& v) {
  if (v.empty()) return "";
  try {
    parse_rand_augment(v);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The schema, in the order of the documentation and of to_yaml. Defaults live in config.h.
Schema schema_of(TrainConfig& c) {
  Schema s;
  s.section("model");
  s.choice("variant", c.model.variant, unireplknet_variant_names());
  s.integer("num_classes", c.model.num_classes, at_least(0));
  s.integer("in_chans", c.model.in_chans, at_least(0));
  s.number("drop_path_rate", c.model.drop_path_rate, interval(0, 1, "[)"));
  s.number("layer_scale_init_value", c.model.layer_scale_init_value, any_number());
  s.number("head_init_scale", c.model.head_init_scale, above(0));
  s.boolean("with_cp", c.model.with_cp);
  s.kernel_table("kernel_sizes", c.model.kernel_sizes);
  s.text("init", c.model.init);
  s.boolean("init_strict", c.model.init_strict);

  s.section("data");
  s.text("path", c.data.path);
  s.text("train_split", c.data.train_split, "a split name", nonempty);
  s.text("eval_split", c.data.eval_split);
  s.integer("input_size", c.data.input_size, at_least(16));
  s.integer("num_workers", c.data.num_workers, at_least(1));
  s.integer("prefetch", c.data.prefetch, at_least(1));
  s.boolean("skip_corrupt", c.data.skip_corrupt);
  s.numbers("mean", c.data.mean, {1, 3}, any_number());
  s.numbers("std", c.data.std, {1, 3}, above(0));
  s.integer("eval_batch_size", c.data.eval_batch_size, at_least(0));

  s.section("augment");
  s.choice("pipeline", c.augment.pipeline, {"imagenet", "small", "none"});
  s.numbers("scale", c.augment.scale, {2}, interval(0, 1, "(]"));
  s.numbers("ratio", c.augment.ratio, {2}, above(0));
  s.number("hflip", c.augment.hflip, interval(0, 1, "[]"));
  s.text("rand_augment", c.augment.rand_augment,
         "\"\" (off) or a timm RandAugment string such as rand-m9-mstd0.5-inc1", rand_augment_spec);
  s.number("random_erasing", c.augment.random_erasing, interval(0, 1, "[]"));
  s.integer("translate", c.augment.translate, at_least(0));
  s.number("crop_pct", c.augment.crop_pct, interval(0, 1, "(]"));
  s.number("mixup", c.augment.mixup, at_least(0));
  s.number("cutmix", c.augment.cutmix, at_least(0));
  s.number("mixup_switch_prob", c.augment.mixup_switch_prob, interval(0, 1, "[]"));
  s.number("mixup_prob", c.augment.mixup_prob, interval(0, 1, "[]"));
  s.number("label_smoothing", c.augment.label_smoothing, interval(0, 1, "[)"));

  s.section("optimizer");
  s.choice("name", c.optimizer.name, {"adamw", "sgd"});
  s.number("lr", c.optimizer.lr, above(0));
  s.numbers("betas", c.optimizer.betas, {2}, interval(0, 1, "[)"));
  s.number("eps", c.optimizer.eps, above(0));
  s.number("momentum", c.optimizer.momentum, interval(0, 1, "[)"));
  s.boolean("nesterov", c.optimizer.nesterov);
  s.number("weight_decay", c.optimizer.weight_decay, at_least(0));
  s.number("weight_decay_end", c.optimizer.weight_decay_end, at_least_or(0, -1));
  s.number("layer_decay", c.optimizer.layer_decay, interval(0, 1, "(]"));
  s.choice("layer_decay_rule", c.optimizer.layer_decay_rule, {"classification", "downstream"});
  s.integer("layer_decay_num_layers", c.optimizer.layer_decay_num_layers, at_least(1));
  s.number("clip_grad", c.optimizer.clip_grad, at_least(0));

  s.section("schedule");
  s.choice("name", c.schedule.name, {"cosine", "step", "poly", "constant"});
  s.number("warmup_epochs", c.schedule.warmup_epochs, at_least(0));
  s.integer("warmup_steps", c.schedule.warmup_steps, at_least(0));
  s.number("warmup_start", c.schedule.warmup_start, at_least(0));
  s.number("min_lr", c.schedule.min_lr, at_least(0));
  s.integers("milestones", c.schedule.milestones, at_least(1));
  s.number("gamma", c.schedule.gamma, above(0));
  s.number("power", c.schedule.power, above(0));

  s.section("train");
  s.integer("epochs", c.train.epochs, at_least(1));
  s.integer("max_steps", c.train.max_steps, at_least(0));
  s.integer("batch_size", c.train.batch_size, at_least(1));
  s.integer("update_freq", c.train.update_freq, at_least(1));
  s.integer("seed", c.train.seed, at_least(0));
  s.choice("device", c.train.device, {"auto", "cpu", "cuda"});
  s.integer("eval_every_epochs", c.train.eval_every_epochs, at_least(0));
  s.integer("threads", c.train.threads, at_least(0));
  s.choice("cuda_graph", c.train.cuda_graph, {"auto", "off"});

  s.section("ema");
  s.boolean("enabled", c.ema.enabled);
  s.number("decay", c.ema.decay, interval(0, 1, "()"));
  s.boolean("eval", c.ema.eval);

  s.section("precision");
  s.choice("dtype", c.precision.dtype, {"float32", "bfloat16", "float16"});
  s.number("loss_scale", c.precision.loss_scale, above(0));
  s.integer("loss_scale_growth_interval", c.precision.loss_scale_growth_interval, at_least(1));

  s.section("checkpoint");
  s.integer("every_epochs", c.checkpoint.every_epochs, at_least(0));
  s.integer("every_steps", c.checkpoint.every_steps, at_least(0));
  s.integer("keep_last", c.checkpoint.keep_last, at_least(1));
  s.boolean("keep_best", c.checkpoint.keep_best);
  s.text("resume", c.checkpoint.resume, "\"\" (fresh), auto or a checkpoint path");

  s.section("logging");
  s.integer("print_every_steps", c.logging.print_every_steps, at_least(1));
  s.boolean("jsonl", c.logging.jsonl);
  s.boolean("progress", c.logging.progress);

  s.section("distributed");
  s.choice("backend", c.distributed.backend, {"auto", "none", "nccl", "mpi"});
  s.boolean("sync_bn", c.distributed.sync_bn);
  s.integer("bucket_mb", c.distributed.bucket_mb, at_least(1));
  s.number("timeout_s", c.distributed.timeout_s, above(0));
  return s;
}

// Where each explicitly set key came from (a message prefix), for the checks that span several keys.
class Origins {
 public:
  explicit Origins(std::string source) : source_(std::move(source)) {}
  void set(const std::string& dotted, const std::string& prefix) { prefix_[dotted] = prefix; }
  // "file:line:col: " where the key was set, "--set ", or "file: " for a default.
  std::string of(const std::string& dotted) const {
    auto it = prefix_.find(dotted);
    return it != prefix_.end() ? it->second : source_ + ": ";
  }

 private:
  std::string source_;
  std::map<std::string, std::string> prefix_;
};

void read_document(const YAML::Node& root, const Schema& schema, const std::string& source, Origins& origins) {
  if (!root.IsDefined() || root.IsNull()) return;  // an empty file: the required keys then say what is missing
  Where here{source, YAML::Mark()};
  UNIREP_CHECK(root.IsMap(), here(root), "expected a mapping of sections (", join(schema.sections()), "); got ",
               got(root));
  std::set<std::string> sections_seen;
  for (const auto& section : root) {
    Where at_name{source, section.first.Mark()};
    std::string name = section.first.Scalar();
    UNIREP_CHECK(schema.has_section(name), at_name(section.first), "unknown section '", name,
                 "' (allowed sections: ", join(schema.sections()), ")");
    UNIREP_CHECK(sections_seen.insert(name).second, at_name(section.first), "section '", name, "' appears twice");
    const YAML::Node& body = section.second;
    if (body.IsNull()) continue;
    UNIREP_CHECK(body.IsMap(), at_name(body), "section '", name, "': expected a mapping of keys (",
                 join(schema.keys(name)), "); got ", got(body));
    std::set<std::string> keys_seen;
    for (const auto& entry : body) {
      Where at_key{source, entry.first.Mark()};
      std::string key = entry.first.Scalar();
      const Field* field = schema.find(name, key);
      UNIREP_CHECK(field, at_key(entry.first), "unknown key '", name, ".", key, "' (allowed keys in '", name,
                   "': ", join(schema.keys(name)), ")");
      UNIREP_CHECK(keys_seen.insert(key).second, at_key(entry.first), "key '", name, ".", key, "' appears twice");
      field->read(entry.second, at_key);
      origins.set(field->dotted(), at_key(entry.first));
    }
  }
}

void apply_override(const std::string& assignment, const Schema& schema, Origins& origins) {
  size_t eq = assignment.find('=');
  UNIREP_CHECK(eq != std::string::npos && eq > 0, "--set expects key=value, got '", assignment, "'");
  std::string dotted = assignment.substr(0, eq), value = assignment.substr(eq + 1);
  size_t dot = dotted.find('.');
  std::string section = dotted.substr(0, dot);
  UNIREP_CHECK(schema.has_section(section), "--set: unknown section '", section, "' in '", dotted,
               "' (allowed sections: ", join(schema.sections()), ")");
  UNIREP_CHECK(dot != std::string::npos, "--set: '", dotted, "' is a section; set one of its keys (",
               join(schema.keys(section)), ") as ", section, ".KEY=VALUE");
  const Field* field = schema.find(section, dotted.substr(dot + 1));
  UNIREP_CHECK(field, "--set: unknown key '", dotted, "' (allowed keys in '", section, "': ",
               join(schema.keys(section)), ")");
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw Error("--set " + dotted + ": cannot read '" + value + "' as a YAML value (" + e.msg + ")");
  }
  field->read(node, Where{});
  origins.set(dotted, "--set ");
}

// Required keys and the rules that span several keys (each field's own range was checked on reading).
void check_consistency(const TrainConfig& c, const Origins& at) {
  UNIREP_CHECK(!c.model.variant.empty(), at.of("model.variant"), "missing required key 'model.variant' (one of ",
               join(unireplknet_variant_names()), "; in the file or as --set model.variant=...)");
  UNIREP_CHECK(!c.data.path.empty(), at.of("data.path"),
               "missing required key 'data.path' (the dataset folder; in the file or as --set data.path=...)");

  if (!c.model.kernel_sizes.empty()) {
    std::vector<int64_t> depths = unireplknet_variant(c.model.variant).depths;
    for (size_t s = 0; s < 4; ++s)
      UNIREP_CHECK(int64_t(c.model.kernel_sizes[s].size()) == depths[s], at.of("model.kernel_sizes"),
                   "model.kernel_sizes[", s, "]: variant '", c.model.variant, "' has ", depths[s],
                   " blocks in stage ", s, ", got ", c.model.kernel_sizes[s].size(), " kernel sizes");
  }
  UNIREP_CHECK(c.data.mean.size() == c.data.std.size(), at.of("data.std"), "data.mean has ", c.data.mean.size(),
               " values but data.std has ", c.data.std.size(), " (expected one per input channel in both)");
  UNIREP_CHECK(c.augment.scale[0] <= c.augment.scale[1], at.of("augment.scale"),
               "augment.scale: expected [min, max] with min <= max; got ", to_string(c.augment.scale));
  UNIREP_CHECK(c.augment.ratio[0] <= c.augment.ratio[1], at.of("augment.ratio"),
               "augment.ratio: expected [min, max] with min <= max; got ", to_string(c.augment.ratio));
  bool mixing = (c.augment.mixup > 0 || c.augment.cutmix > 0) && c.augment.mixup_prob > 0;
  UNIREP_CHECK(!mixing || c.train.batch_size % 2 == 0, at.of("train.batch_size"),
               "train.batch_size: mixup/cutmix (augment.mixup ", shortest(c.augment.mixup), ", augment.cutmix ",
               shortest(c.augment.cutmix), ") pair each image with its mirror in the batch and need an even "
               "batch size; got ", c.train.batch_size);
  UNIREP_CHECK(!c.ema.eval || c.ema.enabled, at.of("ema.eval"),
               "ema.eval: evaluating the EMA weights requires ema.enabled: true");
  const std::vector<int64_t>& m = c.schedule.milestones;
  UNIREP_CHECK(c.schedule.name != "step" || !m.empty(), at.of("schedule.name"),
               "schedule.name: step requires schedule.milestones (epochs at which lr is multiplied by gamma)");
  for (size_t i = 1; i < m.size(); ++i)
    UNIREP_CHECK(m[i - 1] < m[i], at.of("schedule.milestones"),
                 "schedule.milestones: expected increasing epochs; got ", to_string(m));
  UNIREP_CHECK(c.distributed.backend != "nccl" || c.train.device != "cpu", at.of("distributed.backend"),
               "distributed.backend: nccl needs GPUs, but train.device is cpu (use mpi, none or auto)");
}

}  // namespace

TrainConfig parse_train_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                               const std::string& source_name) {
  TrainConfig c;
  Schema schema = schema_of(c);
  Origins origins(source_name);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw Error(source_name + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                ": invalid YAML: " + e.msg);
  }
  read_document(root, schema, source_name, origins);
  for (const std::string& o : overrides) apply_override(o, schema, origins);
  check_consistency(c, origins);
  return c;
}

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  namespace fs = std::filesystem;
  UNIREP_CHECK(fs::exists(path), "config file '", path, "' does not exist");
  UNIREP_CHECK(!fs::is_directory(path), "config file '", path, "' is a directory");
  std::ifstream in(path, std::ios::binary);
  UNIREP_CHECK(in, "config file '", path, "' cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_train_config(text.str(), overrides, path);
}

std::string to_yaml(const TrainConfig& c) {
  TrainConfig copy = c;
  Schema schema = schema_of(copy);
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string section;
  for (const Field& f : schema.fields()) {
    if (f.section != section) {
      if (!section.empty()) out << YAML::EndMap;
      section = f.section;
      out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << f.key << YAML::Value;
    f.write(out);
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::vector<std::string> train_config_keys() {
  TrainConfig c;
  Schema schema = schema_of(c);
  std::vector<std::string> keys;
  for (const Field& f : schema.fields()) keys.push_back(f.dotted());
  return keys;
}

}  // namespace unirep
