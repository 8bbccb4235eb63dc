#include "serialize.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "common.hpp"
#include "simd.hpp"

namespace vcm {

namespace {

// Narrowing copy with running min/max (both vectorize; the range check happens afterwards).
template <typename T>
inline void narrow_minmax(const T* __restrict src, int64_t n, uint8_t* __restrict dst, T& mn, T& mx) {
    T lo = n ? src[0] : T(0), hi = lo;
    for (int64_t i = 0; i < n; ++i) {
        const T v = src[i];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        dst[i] = uint8_t(v);
    }
    mn = lo;
    mx = hi;
}

#define VCM_NARROW(T, NAME) \
    VCM_CLONES void NAME(const T* src, int64_t n, uint8_t* dst, T& mn, T& mx) { narrow_minmax<T>(src, n, dst, mn, mx); }
VCM_NARROW(uint8_t, narrow_u8_)
VCM_NARROW(int8_t, narrow_i8_)
VCM_NARROW(uint16_t, narrow_u16_)
VCM_NARROW(int16_t, narrow_i16_)
VCM_NARROW(int32_t, narrow_i32_)
VCM_NARROW(int64_t, narrow_i64_)
#undef VCM_NARROW

inline void narrow_dispatch(const uint8_t* s, int64_t n, uint8_t* d, uint8_t& a, uint8_t& b) { narrow_u8_(s, n, d, a, b); }
inline void narrow_dispatch(const int8_t* s, int64_t n, uint8_t* d, int8_t& a, int8_t& b) { narrow_i8_(s, n, d, a, b); }
inline void narrow_dispatch(const uint16_t* s, int64_t n, uint8_t* d, uint16_t& a, uint16_t& b) { narrow_u16_(s, n, d, a, b); }
inline void narrow_dispatch(const int16_t* s, int64_t n, uint8_t* d, int16_t& a, int16_t& b) { narrow_i16_(s, n, d, a, b); }
inline void narrow_dispatch(const int32_t* s, int64_t n, uint8_t* d, int32_t& a, int32_t& b) { narrow_i32_(s, n, d, a, b); }
inline void narrow_dispatch(const int64_t* s, int64_t n, uint8_t* d, int64_t& a, int64_t& b) { narrow_i64_(s, n, d, a, b); }

}  // namespace

template <typename T>
int64_t narrow_u8(const T* src, int64_t n, int64_t lo, int64_t hi, uint8_t* dst) {
    if (n <= 0) return -1;
    T mn, mx;
    narrow_dispatch(src, n, dst, mn, mx);
    if (int64_t(mn) >= lo && int64_t(mx) <= hi) return -1;
    for (int64_t i = 0; i < n; ++i)
        if (int64_t(src[i]) < lo || int64_t(src[i]) > hi) return i;
    return -1;
}

template int64_t narrow_u8<uint8_t>(const uint8_t*, int64_t, int64_t, int64_t, uint8_t*);
template int64_t narrow_u8<int8_t>(const int8_t*, int64_t, int64_t, int64_t, uint8_t*);
template int64_t narrow_u8<uint16_t>(const uint16_t*, int64_t, int64_t, int64_t, uint8_t*);
template int64_t narrow_u8<int16_t>(const int16_t*, int64_t, int64_t, int64_t, uint8_t*);
template int64_t narrow_u8<int32_t>(const int32_t*, int64_t, int64_t, int64_t, uint8_t*);
template int64_t narrow_u8<int64_t>(const int64_t*, int64_t, int64_t, int64_t, uint8_t*);

namespace {
VCM_CLONES uint8_t max_u8(const uint8_t* p, int64_t n) {
    uint8_t m = 0;
    for (int64_t i = 0; i < n; ++i) m = p[i] > m ? p[i] : m;
    return m;
}
}  // namespace

int64_t first_frame_above(const uint8_t* data, int64_t frames, int64_t frame_size, int max_qp,
                          int* bad_max) {
    // Frames of no QPs hold none above the limit; returning here also keeps a huge frame count
    // with frame_size 0 from spinning through empty frames.
    if (frames <= 0 || frame_size <= 0) return -1;
    for (int64_t f = 0; f < frames; ++f) {
        const uint8_t m = max_u8(data + f * frame_size, frame_size);
        if (m > max_qp) {
            *bad_max = m;
            return f;
        }
    }
    return -1;
}

void check_block_offsets(int64_t frames, int64_t gh, int64_t gw, int64_t ctu, int64_t block, int64_t h,
                         int64_t w) {
    if (ctu < 1 || block < 1) throw ArgError("ctu and block must be >= 1");
    if (h < 1 || w < 1 || frames < 0 || gh < 0 || gw < 0) throw ArgError("bad picture size, frame count or grid");
    if (ceil_div(h, ctu) != gh || ceil_div(w, ctu) != gw)
        throw ArgError("grid " + std::to_string(gw) + "x" + std::to_string(gh) + " does not cover " +
                       std::to_string(w) + "x" + std::to_string(h) + " with ctu " + std::to_string(ctu));
    // The output (frames x blocks x float) must be addressable: a huge picture over a tiny
    // grid (a huge ctu) asks for more blocks than memory can index.
    const int64_t blocks = checked_mul(ceil_div(h, block), ceil_div(w, block), "block offsets");
    checked_mul(checked_mul(frames, blocks, "block offsets"), int64_t(sizeof(float)), "block offsets");
}

void block_offsets(const int32_t* grid, int64_t frames, int64_t gh, int64_t gw, int64_t ctu,
                   const double* base, int64_t block, int64_t h, int64_t w, float* out) {
    check_block_offsets(frames, gh, gw, ctu, block, h, w);
    if (frames == 0) return;  // the span tables below would be sized by the picture, for nothing
    const int64_t bh = ceil_div(h, block), bw = ceil_div(w, block);
    // Cell span [first, last) under each block row / column (several cells when ctu < block).
    const size_t nbh = static_cast<size_t>(bh), nbw = static_cast<size_t>(bw);
    std::vector<int64_t> r0(nbh), r1(nbh), c0(nbw), c1(nbw);
    for (int64_t b = 0; b < bh; ++b) {
        r0[size_t(b)] = (b * block) / ctu;
        // b * block < h here, so the block's end is computed without forming (b + 1) * block.
        r1[size_t(b)] = std::min(gh, ceil_div(b * block + std::min(block, h - b * block), ctu));
    }
    for (int64_t b = 0; b < bw; ++b) {
        c0[size_t(b)] = (b * block) / ctu;
        c1[size_t(b)] = std::min(gw, ceil_div(b * block + std::min(block, w - b * block), ctu));
    }
    const bool simple = ctu % block == 0;
    for (int64_t f = 0; f < frames; ++f) {
        const int32_t* g = grid + f * gh * gw;
        const double bs = base[f];
        float* o = out + f * bh * bw;
        for (int64_t by = 0; by < bh; ++by) {
            const int64_t ra = r0[size_t(by)];
            if (simple) {
                // Blocks of one CTU row share their values: build the row once, copy it down.
                if (by > 0 && r0[size_t(by - 1)] == ra) {
                    std::memcpy(o + by * bw, o + (by - 1) * bw, size_t(bw) * sizeof(float));
                    continue;
                }
                float* row = o + by * bw;
                const int64_t per = ctu / block;  // blocks per CTU
                for (int64_t c = 0; c < gw; ++c) {
                    const float v = float(double(g[ra * gw + c]) - bs);
                    const int64_t b0 = c * per, b1 = b0 + std::min(per, bw - b0);
                    for (int64_t bx = b0; bx < b1; ++bx) row[bx] = v;
                }
            } else {
                for (int64_t bx = 0; bx < bw; ++bx) {
                    int32_t m = g[ra * gw + c0[size_t(bx)]];
                    for (int64_t r = ra; r < r1[size_t(by)]; ++r)
                        for (int64_t c = c0[size_t(bx)]; c < c1[size_t(bx)]; ++c)
                            m = std::min(m, g[r * gw + c]);
                    o[by * bw + bx] = float(double(m) - bs);
                }
            }
        }
    }
}

namespace {

struct SmallInts {  // "0".."999" as up to 3 chars, for the common case
    char c[1000][3];
    uint8_t len[1000];
    SmallInts() {
        for (int v = 0; v < 1000; ++v) {
            const int l = v >= 100 ? 3 : v >= 10 ? 2 : 1;
            int x = v;
            for (int k = l - 1; k >= 0; --k, x /= 10) c[v][k] = char('0' + x % 10);
            len[v] = uint8_t(l);
        }
    }
};
const SmallInts kSmall;

// Appends the decimal form of v at p (at most 20 chars); returns the new end.
inline char* put_int(char* p, int64_t v) {
    // Magnitude in uint64: -v overflows for INT64_MIN (and then indexed kSmall out of bounds).
    uint64_t u = uint64_t(v);
    if (v < 0) {
        *p++ = '-';
        u = 0 - u;
    }
    if (u < 1000) {
        std::memcpy(p, kSmall.c[u], 3);  // callers leave >= 3 bytes of slack
        return p + kSmall.len[u];
    }
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = char('0' + u % 10);
        u /= 10;
    } while (u);
    while (n) *p++ = tmp[--n];
    return p;
}

}  // namespace

std::string svtav1_roi(const int32_t* offsets, const int64_t* frame_numbers, int64_t frames,
                       int64_t gh, int64_t gw) {
    const int64_t n = checked_mul(gh, gw, "SVT-AV1 ROI map");
    // Per frame: the frame number (<= 20 chars) and '\n', then " -255" at most per offset;
    // 8 bytes of slack for put_int's 3-byte copies.
    const int64_t per = checked_add(21, checked_mul(n, 5, "SVT-AV1 ROI map"), "SVT-AV1 ROI map");
    std::string s;
    s.resize(size_t(checked_add(checked_mul(frames, per, "SVT-AV1 ROI map"), 8, "SVT-AV1 ROI map")));
    char* p = s.data();
    for (int64_t f = 0; f < frames; ++f) {
        const int32_t* o = offsets + f * n;
        // Range first, over the whole frame, then the segment count: the same error as the
        // numpy twin when a frame has both problems.
        for (int64_t i = 0; i < n; ++i)
            if (o[i] < -255 || o[i] > 255)
                throw ArgError("SVT-AV1 ROI offset " + std::to_string(o[i]) + " (frame " +
                               std::to_string(f) + ") outside -255..255");
        int32_t distinct[8];
        int nd = 0;
        p = put_int(p, frame_numbers[f]);
        for (int64_t i = 0; i < n; ++i) {
            const int32_t v = o[i];
            bool seen = false;
            for (int k = 0; k < nd; ++k) seen |= distinct[k] == v;
            if (!seen) {
                if (nd == 8)
                    throw ArgError("SVT-AV1 ROI map of frame " + std::to_string(f) +
                                   " has more than 8 distinct offsets (AV1 has 8 segments)");
                distinct[nd++] = v;
            }
            *p++ = ' ';
            p = put_int(p, v);
        }
        *p++ = '\n';
    }
    s.resize(size_t(p - s.data()));
    return s;
}

std::string csv(const int32_t* maps, int64_t frames, int64_t gh, int64_t gw) {
    // Per row: gw values of at most 11 chars ("-2147483648") with separators, and '\n' (also
    // when gw is 0: rows of an empty grid are still lines); per frame a blank line; 8 bytes of
    // slack for put_int's 3-byte copies.
    const char* what = "CSV of QP maps";
    const int64_t row = checked_add(checked_mul(gw, 12, what), 1, what);
    const int64_t frame = checked_add(checked_mul(gh, row, what), 1, what);
    std::string s;
    s.resize(size_t(checked_add(checked_mul(frames, frame, what), 8, what)));
    char* p = s.data();
    for (int64_t f = 0; f < frames; ++f) {
        if (f) *p++ = '\n';
        const int32_t* m = maps + f * gh * gw;
        for (int64_t r = 0; r < gh; ++r) {
            for (int64_t c = 0; c < gw; ++c) {
                if (c) *p++ = ',';
                p = put_int(p, m[r * gw + c]);
            }
            *p++ = '\n';
        }
    }
    s.resize(size_t(p - s.data()));
    return s;
}

}  // namespace vcm
