// CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78): the
// checksum safetensors files written by crfseg carry over their header and
// data, so a corrupted checkpoint is rejected instead of loaded (see
// safetensors.h). CRC-32C because x86 computes it in hardware (SSE4.2
// crc32 instruction, ~8 bytes per cycle of throughput) and it detects every
// burst error up to 32 bits.
//
// crc32c_update(crc, data, n) continues a running checksum: start from 0,
// and crc32c_update(crc32c_update(0, a), b) == crc32c of a followed by b.
// The check value of the ASCII string "123456789" is 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace crfseg {

// The dispatching entry point: hardware when the CPU has SSE4.2, else the table.
uint32_t crc32c_update(uint32_t crc, const void* data, size_t size);

// The plain reference: one table lookup per byte (the reflected, bytewise
// form of the CRC long division). Kept for tests and non-x86 builds.
uint32_t crc32c_update_reference(uint32_t crc, const void* data, size_t size);

}  // namespace crfseg
