// A 64-bit checksum of bytes, for what the engine reads back from files (prefix snapshots on
// disk): xxHash64's construction (four multiply-rotate lanes, then an avalanche), which checks a
// 100 MB snapshot in about 10 ms, so a damaged file is caught before its KV is restored. It
// guards against damage (a torn sector, a flipped bit, a truncated copy), not against tampering.
#pragma once
#include <cstddef>
#include <cstdint>

namespace llamaserve {

uint64_t checksum64(const void * data, size_t size, uint64_t seed = 0);

}  // namespace llamaserve
