#include "bits.hpp"

#include <cstring>

namespace vcm {
namespace {

constexpr uint64_t kOnes = 0x0101010101010101ULL;
// Multiplying eight 0/1 bytes (little-endian lanes b0..b7) by this constant gathers
// b0<<7 | b1<<6 | ... | b7 into the top byte without carries (all partial products land on
// distinct bit positions).
constexpr uint64_t kGather = 0x8040201008040201ULL;

struct UnpackTable {
    uint64_t v[256];
    constexpr UnpackTable() : v() {
        for (int b = 0; b < 256; ++b) {
            uint64_t x = 0;
            for (int k = 0; k < 8; ++k) x |= uint64_t((b >> (7 - k)) & 1) << (8 * k);
            v[b] = x;  // byte k of the little-endian word = bit k from the MSB
        }
    }
};
constexpr UnpackTable kUnpack;

inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

}  // namespace

int64_t pack_bits(const uint8_t* __restrict src, int64_t n, uint8_t* __restrict dst) {
    static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "little-endian host assumed");
    const int64_t full = n / 8;
    uint64_t bad = 0;
    for (int64_t i = 0; i < full; ++i) {
        const uint64_t v = load64(src + 8 * i);
        bad |= v & ~kOnes;
        dst[i] = uint8_t((v * kGather) >> 56);
    }
    const int64_t rest = n - 8 * full;
    if (rest) {
        uint8_t tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::memcpy(tail, src + 8 * full, size_t(rest));
        const uint64_t v = load64(tail);
        bad |= v & ~kOnes;
        dst[full] = uint8_t((v * kGather) >> 56);
    }
    if (!bad) return -1;
    for (int64_t i = 0; i < n; ++i)
        if (src[i] > 1) return i;
    return -1;
}

void unpack_bits(const uint8_t* __restrict src, int64_t n, uint8_t* __restrict dst) {
    const int64_t full = n / 8;
    for (int64_t i = 0; i < full; ++i) std::memcpy(dst + 8 * i, &kUnpack.v[src[i]], 8);
    const int64_t rest = n - 8 * full;
    if (rest) {
        const uint64_t v = kUnpack.v[src[full]];
        std::memcpy(dst + 8 * full, &v, size_t(rest));
    }
}

}  // namespace vcm
