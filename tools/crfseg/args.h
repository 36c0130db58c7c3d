// A small command-line parser for the crfseg subcommands.
//
// Options are declared with a name ("--epochs"), a metavar, a default and a
// help line; flags take no value. parse() accepts "--name value" and
// "--name=value", rejects unknown options, missing values and stray
// positional arguments (unless positionals are allowed), and answers
// "--help" by returning false after the caller prints help(). Typed getters
// throw UsageError naming the option and the bad value.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensor/error.h"

namespace crfseg::app {

// A bad command line: main() prints "crfseg <cmd>: <what>" and exits with 2.
struct UsageError : ValueError {
  using ValueError::ValueError;
};

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);
  ArgParser& option(const std::string& name, const std::string& metavar, const std::string& default_value,
                    const std::string& help);
  ArgParser& flag(const std::string& name, const std::string& help);
  ArgParser& positionals(const std::string& metavar, const std::string& help);

  // Returns false when --help was given (print help() then).
  bool parse(const std::vector<std::string>& args);
  std::string help() const;

  bool given(const std::string& name) const;  // set on the command line (not defaulted)
  bool flag_set(const std::string& name) const;
  std::string get(const std::string& name) const;
  int64_t get_int(const std::string& name, int64_t min = INT64_MIN, int64_t max = INT64_MAX) const;
  double get_double(const std::string& name, double min = -1e300, double max = 1e300) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Every declared option and flag name, in declaration order.
  const std::vector<std::string>& names() const { return order_; }

 private:
  struct Spec {
    std::string metavar, default_value, help;
    bool is_flag = false;
  };
  const Spec& spec(const std::string& name) const;
  std::string command_, summary_;
  std::vector<std::string> order_;
  std::map<std::string, Spec> specs_;
  std::map<std::string, std::string> values_;
  std::string positional_metavar_, positional_help_;
  std::vector<std::string> positional_;
};

}  // namespace crfseg::app
