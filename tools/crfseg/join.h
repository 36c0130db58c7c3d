// Comma-separated text of a list, for checkpoint metadata: items formatted
// by `format`, joined with ',' (no comma before the first).
#pragma once

#include <string>
#include <vector>

namespace crfseg::app {

template <typename T, typename Format>
std::string join_comma(const std::vector<T>& items, Format format) {
  std::string s;
  for (const T& item : items) {
    if (!s.empty()) s += ',';
    s += format(item);
  }
  return s;
}

}  // namespace crfseg::app
