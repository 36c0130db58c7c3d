// The crfseg subcommands. Each takes the arguments after its name, prints
// its own --help, and returns the process exit status (0 ok, 1 failure,
// 2 bad usage: a UsageError, reported by main() in one line).
#pragma once

#include <string>
#include <vector>

#include "tools/crfseg/args.h"

namespace crfseg::app {

int run_info(const std::vector<std::string>& args);
int run_train(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
int run_predict(const std::vector<std::string>& args);

// Each subcommand's options, as run_* parses them (for help texts, tests and
// the fuzz/fuzz_args target).
ArgParser info_parser();
ArgParser train_parser();
ArgParser eval_parser();
ArgParser predict_parser();

}  // namespace crfseg::app
