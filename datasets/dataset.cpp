// Dataset helpers shared by all implementations (see dataset.h).
#include "datasets/dataset.h"

#include <iostream>

namespace crfseg::data {

void Dataset::check_index(int64_t index, const char* op) const {
  CRFSEG_CHECK(index >= 0 && index < size(), ValueError, op, ": index ", index, " out of range for a dataset of ", size(),
               " samples");
}

WarningSink stderr_warnings() {
  return [](const std::string& message) { std::cerr << "crfseg: warning: " << message << '\n'; };
}

}  // namespace crfseg::data
