// The crfseg subcommands. Each takes the arguments after its name, prints
// its own --help, and returns the process exit status (0 ok, 1 failure,
// 2 bad usage: a UsageError, reported by main() in one line).
#pragma once

#include <string>
#include <vector>

namespace crfseg::app {

int run_info(const std::vector<std::string>& args);
int run_train(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
int run_predict(const std::vector<std::string>& args);

}  // namespace crfseg::app
