// fuzz_args: the crfseg command line. ArgParser::parse over the option sets
// of `crfseg info`, `train`, `eval` and `predict`, then every typed getter,
// the --data spec parser (parse only: nothing is opened) and the model
// options, with a metadata round trip of the model spec.
//
// Input encoding: byte 0 picks the subcommand (value % 4: info, train, eval,
// predict); the rest is argv, the arguments separated by NUL bytes
// ("--epochs\0 3\0--data\0synth:8"). Seeds: fuzz/corpus/fuzz_args, written by
// fuzz/make_corpus.py; dictionary fuzz/dict/args.dict.
//
//   scripts/fuzz.sh 60 fuzz_args
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "tensor/error.h"
#include "tools/crfseg/commands.h"
#include "tools/crfseg/data_spec.h"
#include "tools/crfseg/model_spec.h"

namespace {

using crfseg::app::ArgParser;

ArgParser pick_parser(uint8_t selector) {
  switch (selector % 4) {
    case 0: return crfseg::app::info_parser();
    case 1: return crfseg::app::train_parser();
    case 2: return crfseg::app::eval_parser();
    default: return crfseg::app::predict_parser();
  }
}

bool declares(const ArgParser& p, const std::string& name) {
  return std::find(p.names().begin(), p.names().end(), name) != p.names().end();
}

// Runs one step; a crfseg::Error (UsageError included) is a correct answer.
template <typename F>
void expect_ok_or_error(F&& step) {
  try {
    step();
  } catch (const crfseg::Error&) {
  }
}

void check_model_options(const ArgParser& p) {
  crfseg::app::ModelSpec spec;
  try {
    spec = crfseg::app::model_spec_from(p, 3, 3);
  } catch (const crfseg::Error&) {
    return;
  }
  (void)crfseg::app::describe(spec);
  // Whatever the command line accepted must survive the checkpoint metadata.
  const auto metadata = crfseg::app::to_metadata(spec);
  try {
    const crfseg::app::ModelSpec back = crfseg::app::model_spec_from_metadata(metadata);
    FUZZ_REQUIRE(crfseg::app::to_metadata(back) == metadata, "model spec metadata round trip changed a value");
  } catch (const crfseg::Error& e) {
    std::fprintf(stderr, "model_spec_from_metadata rejected what to_metadata wrote: %s\n", e.what());
    FUZZ_REQUIRE(false, "model spec metadata round trip threw");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ArgParser p = pick_parser(data[0]);
  std::vector<std::string> args;
  std::string current;
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0) {
      args.push_back(current);
      current.clear();
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  if (size > 1) args.push_back(current);

  try {
    if (!p.parse(args)) {
      (void)p.help();  // --help
      return 0;
    }
  } catch (const crfseg::Error&) {
    return 0;
  }
  for (const std::string& name : p.names()) {
    expect_ok_or_error([&] { (void)p.given(name); });
    expect_ok_or_error([&] { (void)p.flag_set(name); });
    expect_ok_or_error([&] { (void)p.get(name); });
    expect_ok_or_error([&] { (void)p.get_int(name); });
    expect_ok_or_error([&] {
      const int64_t v = p.get_int(name, -3, 100);
      FUZZ_REQUIRE(v >= -3 && v <= 100, "get_int returned a value outside its range");
    });
    expect_ok_or_error([&] { (void)p.get_double(name); });
    expect_ok_or_error([&] {
      const double v = p.get_double(name, 0.0, 1.0);
      FUZZ_REQUIRE(v >= 0.0 && v <= 1.0, "get_double returned a value outside its range");
    });
  }
  if (declares(p, "--data")) {
    expect_ok_or_error([&] {
      const crfseg::app::DataSpec d = crfseg::app::parse_data_spec(p);
      FUZZ_REQUIRE(d.kind == "synth" ? d.dir.empty() && d.synth_count >= 1 : !d.dir.empty(), "data spec fields");
      FUZZ_REQUIRE(d.val_fraction >= 0.001 && d.val_fraction <= 0.9, "val fraction out of range");
    });
    // `crfseg eval` re-parses a copy with overrides from the checkpoint.
    expect_ok_or_error([&] {
      ArgParser copy = p;
      copy.parse({"--data", p.get("--data"), "--val-fraction", p.get("--val-fraction")});
      (void)crfseg::app::parse_data_spec(copy);
    });
  }
  if (declares(p, "--encoder")) check_model_options(p);
  return 0;
}
