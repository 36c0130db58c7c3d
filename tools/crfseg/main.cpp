// crfseg: the command-line program. `crfseg <command> --help` for each.
// Errors: a bad command line prints one line ("crfseg train: unknown option
// '--foo' (see crfseg train --help)") and exits 2; any other error (a corrupt
// file, a shape mismatch) prints its message and exits 1. Nothing aborts,
// except in a data-parallel run (mpirun/srun, more than one rank), where an
// error on one rank ends all of them with MPI_Abort: the others would wait
// forever in their next collective.
#include <cstdio>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "tensor/error.h"
#include "tools/crfseg/args.h"
#include "tools/crfseg/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: crfseg <command> [options]\n"
    "\n"
    "commands:\n"
    "  train     train a model (U-Net/ResNet-50/VGG-16 encoder, optional CRF-RNN) on a dataset\n"
    "  eval      evaluate a checkpoint: accuracy, per-class IoU and Dice, confusion matrix\n"
    "  predict   write predicted masks and colour overlays for images or folders\n"
    "  info      the build, devices, CPU features, chosen kernels and a model summary\n"
    "\n"
    "`crfseg <command> --help` lists each command's options.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::printf("%s", kUsage);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "train") return crfseg::app::run_train(args);
    if (command == "eval") return crfseg::app::run_eval(args);
    if (command == "predict") return crfseg::app::run_predict(args);
    if (command == "info") return crfseg::app::run_info(args);
    std::fprintf(stderr, "crfseg: unknown command '%s'\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const crfseg::app::UsageError& e) {
    std::fprintf(stderr, "crfseg %s: %s (see crfseg %s --help)\n", command.c_str(), e.what(), command.c_str());
    crfseg::dist::abort_world(2);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crfseg %s: error: %s\n", command.c_str(), e.what());
    crfseg::dist::abort_world(1);
    return 1;
  }
}
