// Shared helpers for vcmtool._native. Pure C++ (no Python headers) so the hot code compiles fast
// and can be unit-tested from the bindings alone.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace vcm {

// Malformed input data (a file or stream the user handed in). The bindings map it to
// vcmtool._native.FormatError (a ValueError); the Python facade turns it into InputError.
struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Bad arguments from the caller (shapes, ranges): ValueError in Python.
struct ArgError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline void put_le32(uint8_t* p, uint32_t v) {
    p[0] = uint8_t(v);
    p[1] = uint8_t(v >> 8);
    p[2] = uint8_t(v >> 16);
    p[3] = uint8_t(v >> 24);
}

inline uint32_t get_le32(const uint8_t* p) {
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}

}  // namespace vcm
