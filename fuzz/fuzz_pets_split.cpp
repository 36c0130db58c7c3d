// fuzz_pets_split: datasets/pets.h parse_pets_split(), the parser of the
// Oxford-IIIT Pet split files (annotations/trainval.txt, test.txt), on
// arbitrary text. Checks that every stem it returns is a usable file name.
//
//   scripts/fuzz.sh 60 fuzz_pets_split corpus: fuzz/corpus/fuzz_pets_split
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>

#include "datasets/pets.h"
#include "fuzz/fuzz_check.h"
#include "tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const std::vector<std::string> stems = crfseg::data::parse_pets_split(text, "fuzz-input");
    FUZZ_REQUIRE(!stems.empty(), "empty list returned instead of ValueError");
    for (const std::string& stem : stems) {
      FUZZ_REQUIRE(!stem.empty() && stem[0] != '#', "empty or comment stem");
      FUZZ_REQUIRE(stem != "." && stem != "..", "dot stem");
      for (char c : stem) {
        FUZZ_REQUIRE(!std::isspace(static_cast<unsigned char>(c)), "stem holds whitespace");
        FUZZ_REQUIRE(c != '/' && c != '\\' && c != '\0', "stem holds a path separator or NUL");
      }
      FUZZ_REQUIRE(text.find(stem) != std::string::npos, "stem not taken from the text");
    }
  } catch (const crfseg::Error&) {
  }
  return 0;
}
