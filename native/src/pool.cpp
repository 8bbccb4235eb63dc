#include "pool.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common.hpp"
#include "simd.hpp"

namespace vcm {
namespace {

// Row kernels: acc[x] = op(acc[x], rows[0..n)[x]), four rows per pass over acc (fewer
// accumulator loads/stores). Float min/max propagate NaN like numpy.
inline uint8_t min_u8(uint8_t a, uint8_t b) { return b < a ? b : a; }
inline uint8_t max_u8(uint8_t a, uint8_t b) { return b > a ? b : a; }
inline float min_f32(float a, float b) { return (b < a || b != b) ? b : a; }
inline float max_f32(float a, float b) { return (b > a || b != b) ? b : a; }

#define VCM_ROWS_KERNEL(NAME, T, OP)                                                                  \
    VCM_CLONES void NAME(T* __restrict acc, const T* __restrict src, ptrdiff_t stride, int64_t n, \
                         int64_t w) {                                                             \
        int64_t y = 0;                                                                            \
        for (; y + 4 <= n; y += 4) {                                                              \
            const T* r0 = src + y * stride;                                                       \
            const T* r1 = r0 + stride;                                                            \
            const T* r2 = r1 + stride;                                                            \
            const T* r3 = r2 + stride;                                                            \
            for (int64_t x = 0; x < w; ++x) acc[x] = OP(acc[x], OP(OP(r0[x], r1[x]), OP(r2[x], r3[x])));  \
        }                                                                                         \
        for (; y < n; ++y) {                                                                      \
            const T* r = src + y * stride;                                                        \
            for (int64_t x = 0; x < w; ++x) acc[x] = OP(acc[x], r[x]);                            \
        }                                                                                         \
    }
VCM_ROWS_KERNEL(rows_min_u8, uint8_t, min_u8)
VCM_ROWS_KERNEL(rows_max_u8, uint8_t, max_u8)
VCM_ROWS_KERNEL(rows_min_f32, float, min_f32)
VCM_ROWS_KERNEL(rows_max_f32, float, max_f32)
#undef VCM_ROWS_KERNEL

// Sums: four rows are added in the accumulator's width, then once into acc.
VCM_CLONES void rows_add_u8_u16(uint16_t* __restrict acc, const uint8_t* __restrict src, ptrdiff_t stride, int64_t n,
                                int64_t w) {
    int64_t y = 0;
    for (; y + 4 <= n; y += 4) {
        const uint8_t* r0 = src + y * stride;
        const uint8_t* r1 = r0 + stride;
        const uint8_t* r2 = r1 + stride;
        const uint8_t* r3 = r2 + stride;
        for (int64_t x = 0; x < w; ++x)
            acc[x] = uint16_t(acc[x] + uint16_t(uint16_t(r0[x] + r1[x]) + uint16_t(r2[x] + r3[x])));
    }
    for (; y < n; ++y) {
        const uint8_t* r = src + y * stride;
        for (int64_t x = 0; x < w; ++x) acc[x] = uint16_t(acc[x] + r[x]);
    }
}
VCM_CLONES void rows_add_u8_u32(uint32_t* __restrict acc, const uint8_t* __restrict src, ptrdiff_t stride, int64_t n,
                                int64_t w) {
    for (int64_t y = 0; y < n; ++y) {
        const uint8_t* r = src + y * stride;
        for (int64_t x = 0; x < w; ++x) acc[x] += r[x];
    }
}
VCM_CLONES void rows_add_f32_f64(double* __restrict acc, const float* __restrict src, ptrdiff_t stride, int64_t n,
                                 int64_t w) {
    for (int64_t y = 0; y < n; ++y) {
        const float* r = src + y * stride;
        for (int64_t x = 0; x < w; ++x) acc[x] += double(r[x]);
    }
}

inline void rows_op(uint8_t* acc, const uint8_t* src, ptrdiff_t stride, int64_t n, int64_t w, bool is_max) {
    is_max ? rows_max_u8(acc, src, stride, n, w) : rows_min_u8(acc, src, stride, n, w);
}
inline void rows_op(float* acc, const float* src, ptrdiff_t stride, int64_t n, int64_t w, bool is_max) {
    is_max ? rows_max_f32(acc, src, stride, n, w) : rows_min_f32(acc, src, stride, n, w);
}
inline void rows_add(uint16_t* acc, const uint8_t* src, ptrdiff_t stride, int64_t n, int64_t w) {
    rows_add_u8_u16(acc, src, stride, n, w);
}
inline void rows_add(uint32_t* acc, const uint8_t* src, ptrdiff_t stride, int64_t n, int64_t w) {
    rows_add_u8_u32(acc, src, stride, n, w);
}

template <typename T>
inline T pick(T acc, T v, bool is_max) {
    if constexpr (std::is_floating_point_v<T>) {
        if (v != v) return v;
        if (acc != acc) return acc;
    }
    return is_max ? (v > acc ? v : acc) : (v < acc ? v : acc);
}

template <typename T>
void pool_minmax(const T* src, ptrdiff_t stride, int64_t h, int64_t w, int64_t ctu, bool is_max, T* out) {
    const int64_t gh = ceil_div(h, ctu), gw = ceil_div(w, ctu);
    std::vector<T> acc(size_t(w > 0 ? w : 1));
    for (int64_t r = 0; r < gh; ++r) {
        const int64_t y0 = r * ctu, y1 = y0 + std::min(ctu, h - y0);
        std::memcpy(acc.data(), src + y0 * stride, size_t(w) * sizeof(T));
        rows_op(acc.data(), src + (y0 + 1) * stride, stride, y1 - y0 - 1, w, is_max);
        for (int64_t c = 0; c < gw; ++c) {
            const int64_t x0 = c * ctu, x1 = x0 + std::min(ctu, w - x0);
            T m = acc[size_t(x0)];
            for (int64_t x = x0 + 1; x < x1; ++x) m = pick(m, acc[size_t(x)], is_max);
            out[r * gw + c] = m;
        }
    }
}

template <typename Acc>
void pool_mean_u8_t(const uint8_t* src, ptrdiff_t stride, int64_t h, int64_t w, int64_t ctu,
                    float* out) {
    const int64_t gh = ceil_div(h, ctu), gw = ceil_div(w, ctu);
    std::vector<Acc> acc(size_t(w > 0 ? w : 1));
    for (int64_t r = 0; r < gh; ++r) {
        const int64_t y0 = r * ctu, y1 = y0 + std::min(ctu, h - y0);
        std::fill(acc.begin(), acc.end(), Acc(0));
        rows_add(acc.data(), src + y0 * stride, stride, y1 - y0, w);
        for (int64_t c = 0; c < gw; ++c) {
            const int64_t x0 = c * ctu, x1 = x0 + std::min(ctu, w - x0);
            uint64_t s = 0;
            for (int64_t x = x0; x < x1; ++x) s += acc[size_t(x)];
            out[r * gw + c] = float(double(s) / double((y1 - y0) * (x1 - x0)));
        }
    }
}

void pool_mean_f32(const float* src, ptrdiff_t stride, int64_t h, int64_t w, int64_t ctu, float* out) {
    const int64_t gh = ceil_div(h, ctu), gw = ceil_div(w, ctu);
    std::vector<double> acc(size_t(w > 0 ? w : 1));
    for (int64_t r = 0; r < gh; ++r) {
        const int64_t y0 = r * ctu, y1 = y0 + std::min(ctu, h - y0);
        std::fill(acc.begin(), acc.end(), 0.0);
        rows_add_f32_f64(acc.data(), src + y0 * stride, stride, y1 - y0, w);
        for (int64_t c = 0; c < gw; ++c) {
            const int64_t x0 = c * ctu, x1 = x0 + std::min(ctu, w - x0);
            double s = 0;
            for (int64_t x = x0; x < x1; ++x) s += acc[size_t(x)];
            out[r * gw + c] = float(s / double((y1 - y0) * (x1 - x0)));
        }
    }
}

void check_dims(int64_t h, int64_t w, int64_t ctu) {
    if (ctu < 1) throw ArgError("ctu must be >= 1, got " + std::to_string(ctu));
    if (h < 0 || w < 0) throw ArgError("negative map size");
}

}  // namespace

void pool_u8(const uint8_t* src, ptrdiff_t stride, int64_t h, int64_t w, int64_t ctu, PoolMode mode,
             uint8_t* out_minmax, float* out_mean) {
    check_dims(h, w, ctu);
    if (h == 0 || w == 0) return;
    switch (mode) {
        case PoolMode::Min: pool_minmax<uint8_t>(src, stride, h, w, ctu, false, out_minmax); break;
        case PoolMode::Max: pool_minmax<uint8_t>(src, stride, h, w, ctu, true, out_minmax); break;
        case PoolMode::Mean:
            // 16-bit column sums hold up to 257 rows of 255.
            if (std::min(ctu, h) <= 257)
                pool_mean_u8_t<uint16_t>(src, stride, h, w, ctu, out_mean);
            else
                pool_mean_u8_t<uint32_t>(src, stride, h, w, ctu, out_mean);
            break;
    }
}

void pool_f32(const float* src, ptrdiff_t stride, int64_t h, int64_t w, int64_t ctu, PoolMode mode,
              float* out) {
    check_dims(h, w, ctu);
    if (h == 0 || w == 0) return;
    switch (mode) {
        case PoolMode::Min: pool_minmax<float>(src, stride, h, w, ctu, false, out); break;
        case PoolMode::Max: pool_minmax<float>(src, stride, h, w, ctu, true, out); break;
        case PoolMode::Mean: pool_mean_f32(src, stride, h, w, ctu, out); break;
    }
}

void rasterize_boxes(int64_t h, int64_t w, int64_t ctu, const float* boxes, const uint8_t* qps,
                     int64_t n, uint8_t background, uint8_t* out) {
    check_dims(h, w, ctu);
    const int64_t gh = ceil_div(h, ctu), gw = ceil_div(w, ctu);
    std::fill(out, out + gh * gw, background);
    const double W = double(w), H = double(h), C = double(ctu);
    for (int64_t i = 0; i < n; ++i) {
        const float* b = boxes + 4 * i;
        if (std::isnan(b[0]) || std::isnan(b[1]) || std::isnan(b[2]) || std::isnan(b[3]))
            throw ArgError("box " + std::to_string(i) + " has a NaN coordinate");
        const double x0 = std::max(0.0, double(b[0])), y0 = std::max(0.0, double(b[1]));
        const double x1 = std::min(W, double(b[2])), y1 = std::min(H, double(b[3]));
        if (x1 <= x0 || y1 <= y0) continue;
        const int64_t c0 = int64_t(std::floor(x0 / C)), r0 = int64_t(std::floor(y0 / C));
        // Clamp in double before converting: a float -> int64 conversion of a value past
        // INT64_MAX is undefined (huge pictures make W / C such a value).
        const int64_t c1 = int64_t(std::min(double(gw), std::ceil(x1 / C)));
        const int64_t r1 = int64_t(std::min(double(gh), std::ceil(y1 / C)));
        const uint8_t q = qps[i];
        for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = c0; c < c1; ++c) {
                uint8_t& o = out[r * gw + c];
                if (q < o) o = q;
            }
    }
}

void rasterize_masks(const uint8_t* masks, ptrdiff_t mstride, ptrdiff_t stride, int64_t n,
                     int64_t h, int64_t w, int64_t ctu, const uint8_t* qps, uint8_t background,
                     uint8_t* out) {
    check_dims(h, w, ctu);
    const int64_t gh = ceil_div(h, ctu), gw = ceil_div(w, ctu);
    std::fill(out, out + gh * gw, background);
    std::vector<uint8_t> hit(size_t(gw > 0 ? gw : 1));
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t q = qps[i];
        const uint8_t* m = masks + i * mstride;
        for (int64_t r = 0; r < gh; ++r) {
            const int64_t y0 = r * ctu, y1 = y0 + std::min(ctu, h - y0);
            std::fill(hit.begin(), hit.end(), uint8_t(0));
            for (int64_t y = y0; y < y1; ++y) {
                const uint8_t* row = m + y * stride;
                for (int64_t c = 0; c < gw; ++c) {
                    if (hit[size_t(c)]) continue;
                    const int64_t x0 = c * ctu, x1 = x0 + std::min(ctu, w - x0);
                    uint8_t any = 0;
                    for (int64_t x = x0; x < x1; ++x) any |= row[x];
                    hit[size_t(c)] = any != 0;
                }
            }
            for (int64_t c = 0; c < gw; ++c)
                if (hit[size_t(c)] && q < out[r * gw + c]) out[r * gw + c] = q;
        }
    }
}

}  // namespace vcm
