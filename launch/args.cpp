#include "launch/args.h"

namespace unirep {

Args::Args(int argc, char** argv, int first, std::set<std::string> options, std::set<std::string> flags) {
  std::string command = first > 1 ? std::string("unirep ") + argv[first - 1] : "unirep";
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      positional_.push_back(a);
    } else if (flags.count(a)) {
      flags_set_.insert(a);
    } else if (options.count(a)) {
      UNIREP_CHECK(i + 1 < argc, command, ": option ", a, " needs a value");
      values_.emplace_back(a, argv[++i]);
    } else {
      std::string known;
      for (const std::string& o : options) known += " " + o;
      for (const std::string& f : flags) known += " " + f;
      throw Error(command + ": unknown option '" + a + "' (known:" + (known.empty() ? " none" : known) + ")");
    }
  }
}

bool Args::has(const std::string& name) const {
  for (auto& [n, v] : values_)
    if (n == name) return true;
  return false;
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
  for (auto it = values_.rbegin(); it != values_.rend(); ++it)
    if (it->first == name) return it->second;
  return fallback;
}

std::vector<std::string> Args::get_all(const std::string& name) const {
  std::vector<std::string> out;
  for (auto& [n, v] : values_)
    if (n == name) out.push_back(v);
  return out;
}

std::string Args::require(const std::string& name) const {
  UNIREP_CHECK(has(name), "missing required option ", name);
  return get(name, "");
}

int64_t Args::get_int(const std::string& name, int64_t fallback) const {
  if (!has(name)) return fallback;
  std::string text = get(name, "");
  try {
    size_t used = 0;
    int64_t v = std::stoll(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error("option " + name + " expects an integer, got '" + text + "'");
}

double Args::get_double(const std::string& name, double fallback) const {
  if (!has(name)) return fallback;
  std::string text = get(name, "");
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    if (used == text.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error("option " + name + " expects a number, got '" + text + "'");
}

}  // namespace unirep
