// A small command-line parser: `--name value` options, `--flag` switches and positional arguments,
// each subcommand declaring which it accepts, so a misspelt option is an error that names it.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace unirep {

class Args {
 public:
  Args(int argc, char** argv, int first, std::set<std::string> options, std::set<std::string> flags);
  bool flag(const std::string& name) const { return flags_set_.count(name) > 0; }
  bool has(const std::string& name) const;
  std::string get(const std::string& name, const std::string& fallback) const;  // the last one given
  std::vector<std::string> get_all(const std::string& name) const;              // every one, in order
  std::string require(const std::string& name) const;
  int64_t get_int(const std::string& name, int64_t fallback) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::vector<std::pair<std::string, std::string>> values_;
  std::set<std::string> flags_set_;
  std::vector<std::string> positional_;
};

}  // namespace unirep
