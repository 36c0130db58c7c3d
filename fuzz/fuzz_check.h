// Shared by the fuzz targets: FUZZ_REQUIRE aborts (a finding, reported by
// libFuzzer with the input) when a parser broke one of its documented
// invariants without throwing. A crfseg::Error is a correct outcome for bad
// input and is caught by each target; anything else escapes and is a finding.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_REQUIRE(cond, what)                                                          \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "fuzz invariant failed: %s (%s) at %s:%d\n", what, #cond,       \
                   __FILE__, __LINE__);                                                   \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
