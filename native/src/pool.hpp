// CTU pooling and rasterization onto the CTU grid.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vcm {

enum class PoolMode { Min, Max, Mean };

// src: h rows of w samples, rows `stride` elements apart. out: ceil(h/ctu) x ceil(w/ctu).
// Partial CTUs at the right/bottom edge pool only the real pixels. Float min/max propagate NaN.
void pool_u8(const uint8_t* src, ptrdiff_t stride, int64_t h, int64_t w, int64_t ctu, PoolMode mode,
             uint8_t* out_minmax, float* out_mean);
void pool_f32(const float* src, ptrdiff_t stride, int64_t h, int64_t w, int64_t ctu, PoolMode mode,
              float* out);

// boxes: n x (x0, y0, x1, y1) in pixels; each touched CTU takes min(its value, qp).
void rasterize_boxes(int64_t h, int64_t w, int64_t ctu, const float* boxes, const uint8_t* qps,
                     int64_t n, uint8_t background, uint8_t* out);

// masks: n x h x w (nonzero = inside), rows `stride` bytes apart, masks `mstride` bytes apart.
void rasterize_masks(const uint8_t* masks, ptrdiff_t mstride, ptrdiff_t stride, int64_t n,
                     int64_t h, int64_t w, int64_t ctu, const uint8_t* qps, uint8_t background,
                     uint8_t* out);

}  // namespace vcm
