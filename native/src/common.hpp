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

// ceil(a / b) for a >= 0, b >= 1. Written without `a + b - 1`, which overflows for sizes near
// INT64_MAX (a huge ctu or block from Python would wrap to a negative grid size).
inline int64_t ceil_div(int64_t a, int64_t b) { return a / b + (a % b != 0 ? 1 : 0); }

// Size arithmetic on values that come from Python (counts, shapes, sizes): every product and sum
// that sizes a buffer or bounds a read is checked, so an overflowing request is an ArgError
// instead of a small allocation followed by an out-of-bounds write or read.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
    int64_t r;
    if (a < 0 || b < 0) throw ArgError(std::string(what) + ": negative size");
    if (__builtin_mul_overflow(a, b, &r)) throw ArgError(std::string(what) + ": size overflows 64 bits");
    return r;
}

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
    int64_t r;
    if (a < 0 || b < 0) throw ArgError(std::string(what) + ": negative size");
    if (__builtin_add_overflow(a, b, &r)) throw ArgError(std::string(what) + ": size overflows 64 bits");
    return r;
}

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
