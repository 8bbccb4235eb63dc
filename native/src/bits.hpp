// Bit packing of {0,1} tensors, MSB first.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vcm {

// Packs n bytes of 0/1 into ceil(n/8) bytes, MSB first, zero padded. Returns the index of the
// first input byte that is neither 0 nor 1, or -1.
int64_t pack_bits(const uint8_t* src, int64_t n, uint8_t* dst);

// Unpacks n bits (MSB first) into n bytes of 0/1.
void unpack_bits(const uint8_t* src, int64_t n, uint8_t* dst);

}  // namespace vcm
