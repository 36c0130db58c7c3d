// File-system helpers (see files.h).
#include "datasets/files.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "tensor/error.h"

namespace crfseg::data {

namespace fs = std::filesystem;

void require_directory(const std::string& path, const char* op, const std::string& what, const std::string& hint) {
  std::error_code ec;
  CRFSEG_CHECK(fs::is_directory(path, ec), IOError, op, ": ", what, " '", path, "' not found", hint.empty() ? "" : "; ",
               hint);
}

std::vector<std::string> list_files(const std::string& dir, const std::vector<std::string>& extensions) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !entry.is_regular_file(ec)) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
    if (std::find(extensions.begin(), extensions.end(), ext) != extensions.end()) files.push_back(entry.path().string());
  }
  CRFSEG_CHECK(!ec, IOError, "list_files: cannot read directory '", dir, "': ", ec.message());
  std::sort(files.begin(), files.end(), natural_less);
  return files;
}

bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      // Compare the digit runs as numbers: skip leading zeros, then longer is larger, then lexicographic.
      size_t i0 = i, j0 = j;
      while (i0 < a.size() && a[i0] == '0') ++i0;
      while (j0 < b.size() && b[j0] == '0') ++j0;
      size_t i1 = i0, j1 = j0;
      while (i1 < a.size() && std::isdigit(static_cast<unsigned char>(a[i1]))) ++i1;
      while (j1 < b.size() && std::isdigit(static_cast<unsigned char>(b[j1]))) ++j1;
      if (i1 - i0 != j1 - j0) return i1 - i0 < j1 - j0;
      const int cmp = a.compare(i0, i1 - i0, b, j0, j1 - j0);
      if (cmp != 0) return cmp < 0;
      i = i1;
      j = j1;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;  // equal up to zero padding: any fixed order
}

std::string stem_of(const std::string& path) { return fs::path(path).stem().string(); }

}  // namespace crfseg::data
