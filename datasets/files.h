// File-system helpers shared by the folder-based datasets.
#pragma once

#include <string>
#include <vector>

namespace crfseg::data {

// Throws IOError "<op>: <what> '<path>' not found; <hint>" unless path is a directory.
void require_directory(const std::string& path, const char* op, const std::string& what, const std::string& hint);

// The regular files directly in `dir` whose extension (case-insensitive, with
// the dot) is one of `extensions`, hidden files ("._x.png" from macOS, ".x")
// left out, in natural order (see natural_less).
std::vector<std::string> list_files(const std::string& dir, const std::vector<std::string>& extensions);

// "Natural" name order: runs of digits compare as numbers, so slice_2 comes
// before slice_10 whether or not the numbers are zero-padded.
bool natural_less(const std::string& a, const std::string& b);

// The file name without folder and extension ("/d/img_01.png" -> "img_01").
std::string stem_of(const std::string& path);

}  // namespace crfseg::data
