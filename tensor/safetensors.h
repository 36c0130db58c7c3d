// safetensors I/O: named tensors and string metadata in Hugging Face's
// safetensors format (https://huggingface.co/docs/safetensors).
//
// File layout, all integers little-endian:
//   [8 bytes]  N, the header length, unsigned 64-bit
//   [N bytes]  UTF-8 JSON object, padded with trailing spaces to a multiple of 8:
//              {"__metadata__": {"key": "value", ...},
//               "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//   [rest]     the data buffer; tensor "name" occupies bytes [begin, end) of it,
//              row-major, little-endian, with end - begin = numel * itemsize.
// Data regions must tile the buffer exactly: no gaps, no overlaps.
//
// Integrity: the writer adds the metadata entry "crfseg.crc32c", the CRC-32C
// (8 hex digits) of the compact header without that entry followed by the
// data buffer. The reader recomputes it and rejects a file whose contents
// changed since it was written (a flipped bit anywhere in the tensors, the
// shapes, the names or the metadata), and removes the entry from the
// metadata it returns. Files from other writers carry no checksum and are
// checked for structure only.
//
// dtypes: F32, F64, I32, I64, U8 <-> crfseg f32, f64, i32, i64, u8.
// F16/BF16 (and the other safetensors dtypes) are rejected with IOError.
// This is the format of tests/fixtures/ and of model checkpoints; a
// torchvision state_dict exported with safetensors.torch.save_file loads here.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace crfseg {

// The metadata key of the checksum (see above); reserved for the writer.
inline constexpr const char* kSafetensorsChecksumKey = "crfseg.crc32c";

struct SafetensorsFile {
  std::string path;  // where it was loaded from, for error messages
  // Tensors in file order (ascending data offset), as contiguous CPU tensors.
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__", empty when absent
  // True when the file carried a checksum and it matched. Readers of files
  // crfseg itself wrote (checkpoints) require it: a checksum entry whose key
  // was damaged would otherwise turn verification off unnoticed.
  bool checksum_verified = false;

  bool contains(const std::string& name) const;
  // The tensor called `name`; throws ValueError naming it and the path when absent.
  const Tensor& at(const std::string& name) const;
};

// Writes `tensors` (in the given order) and `metadata` to `path` atomically:
// the file is written to "<path>.tmp.<pid>" in the same directory, flushed and
// fsync'ed, then renamed over `path`, so readers see either the old file or
// the complete new one, never a truncated one. Strided tensors are written as
// contiguous copies and CUDA tensors are copied to the host first.
// Throws IOError naming the path (and no file is created or replaced) for:
// a metadata key equal to kSafetensorsChecksumKey, an undefined tensor, a duplicate or
// reserved ("__metadata__") name, strings that are not valid UTF-8, and any
// failure to create, write, flush, sync or rename the file.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads a whole safetensors file into CPU tensors. Throws IOError naming the
// path and the offending field when: the file cannot be opened or read, is
// shorter than 8 bytes, or its header length exceeds the file; the header is
// not strict JSON (RFC 8259, UTF-8) or not an object of the layout above;
// a name is duplicated; a dtype is unknown or unsupported; a shape and its
// data_offsets disagree (end - begin != numel * itemsize); offsets fall
// outside the data buffer; data regions overlap, leave gaps, or do not end
// at the end of the file; the checksum, when present, does not match.
SafetensorsFile load_safetensors(const std::string& path);

// The same parser over bytes already in memory (a fuzz target's input, a
// file read some other way); errors name `source` where load_safetensors
// names the path.
SafetensorsFile parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source);

}  // namespace crfseg
