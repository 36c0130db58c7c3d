// ArgParser; see args.h.
#include "tools/crfseg/args.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace crfseg::app {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser& ArgParser::option(const std::string& name, const std::string& metavar, const std::string& default_value,
                             const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{metavar, default_value, help, false};
  return *this;
}

ArgParser& ArgParser::flag(const std::string& name, const std::string& help) {
  order_.push_back(name);
  specs_[name] = Spec{"", "", help, true};
  return *this;
}

ArgParser& ArgParser::positionals(const std::string& metavar, const std::string& help) {
  positional_metavar_ = metavar;
  positional_help_ = help;
  return *this;
}

bool ArgParser::parse(const std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") return false;
    if (a.rfind("--", 0) != 0 || a.size() == 2) {
      if (positional_metavar_.empty()) throw UsageError("unexpected argument '" + a + "'");
      positional_.push_back(a);
      continue;
    }
    std::string name = a, value;
    bool inline_value = false;
    if (const size_t eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    auto it = specs_.find(name);
    if (it == specs_.end()) throw UsageError("unknown option '" + name + "'");
    if (it->second.is_flag) {
      if (inline_value) throw UsageError("option '" + name + "' takes no value");
      values_[name] = "1";
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) throw UsageError("option '" + name + "' needs a value (" + it->second.metavar + ")");
      value = args[++i];
    }
    values_[name] = value;
  }
  return true;
}

std::string ArgParser::help() const {
  std::ostringstream out;
  out << "usage: " << command_ << " [options]" << (positional_metavar_.empty() ? "" : " " + positional_metavar_)
      << "\n\n" << summary_ << "\n\noptions:\n";
  for (const std::string& name : order_) {
    const Spec& s = specs_.at(name);
    std::string left = "  " + name + (s.is_flag ? "" : " " + s.metavar);
    if (left.size() < 26) left.resize(26, ' ');
    else left += "\n" + std::string(26, ' ');
    out << left << s.help;
    if (!s.is_flag && !s.default_value.empty()) out << " (default: " << s.default_value << ")";
    out << '\n';
  }
  if (!positional_metavar_.empty()) out << "  " << positional_metavar_ << ": " << positional_help_ << '\n';
  out << "  --help                  show this help\n";
  return out.str();
}

const ArgParser::Spec& ArgParser::spec(const std::string& name) const {
  auto it = specs_.find(name);
  CRFSEG_CHECK(it != specs_.end(), ValueError, "ArgParser: option ", name, " was never declared");
  return it->second;
}

bool ArgParser::given(const std::string& name) const {
  spec(name);
  return values_.count(name) != 0;
}

bool ArgParser::flag_set(const std::string& name) const { return spec(name).is_flag && given(name); }

std::string ArgParser::get(const std::string& name) const {
  const Spec& s = spec(name);
  auto it = values_.find(name);
  return it != values_.end() ? it->second : s.default_value;
}

int64_t ArgParser::get_int(const std::string& name, int64_t min, int64_t max) const {
  const std::string v = get(name);
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno != 0) throw UsageError(name + " expects an integer, got '" + v + "'");
  if (x < min || x > max) {
    throw UsageError(name + " must be in [" + std::to_string(min) + ", " + std::to_string(max) + "], got " + v);
  }
  return x;
}

double ArgParser::get_double(const std::string& name, double min, double max) const {
  const std::string v = get(name);
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(x)) throw UsageError(name + " expects a number, got '" + v + "'");
  if (x < min || x > max) {
    std::ostringstream msg;
    msg << name << " must be in [" << min << ", " << max << "], got " << v;
    throw UsageError(msg.str());
  }
  return x;
}

}  // namespace crfseg::app
