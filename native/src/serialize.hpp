// QP-map serialization: .qpm frames, kvazaar ROI, SVT-AV1 ROI text, x265/x264 16x16 offsets, CSV.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vcm {

// Narrow n integers to uint8/int8 with a range check [lo, hi]. Returns the index of the first
// value outside the range, or -1 when all fit (dst is fully written either way).
template <typename T>
int64_t narrow_u8(const T* src, int64_t n, int64_t lo, int64_t hi, uint8_t* dst);

// Index of the first frame (frame_size bytes each) holding a value > max_qp, or -1; *bad_max
// receives that frame's maximum. data must hold frames * frame_size bytes (the caller checks,
// overflow-safe); frames or frame_size <= 0 return -1 at once.
int64_t first_frame_above(const uint8_t* data, int64_t frames, int64_t frame_size, int max_qp,
                          int* bad_max);

// Per-block float offsets (block x block pixels) from a per-CTU grid: for each frame f,
// out[f, by, bx] = min(grid cells under the block) - base[f]. out is F x ceil(h/block) x
// ceil(w/block).
// Throws ArgError unless block_offsets can run on these sizes: ctu, block, h, w >= 1, the grid
// covers h x w with ctu cells, and the output size fits in 64 bits.
void check_block_offsets(int64_t frames, int64_t gh, int64_t gw, int64_t ctu, int64_t block, int64_t h,
                         int64_t w);
void block_offsets(const int32_t* grid, int64_t frames, int64_t gh, int64_t gw, int64_t ctu,
                   const double* base, int64_t block, int64_t h, int64_t w, float* out);

// SVT-AV1 --roi-map-file lines: "<frame> <off> <off> ...\n" per frame. Throws ArgError for
// offsets outside [-255, 255] or more than 8 distinct offsets in a frame.
std::string svtav1_roi(const int32_t* offsets, const int64_t* frame_numbers, int64_t frames,
                       int64_t gh, int64_t gw);

// CSV: comma-separated rows, a blank line between frames.
std::string csv(const int32_t* maps, int64_t frames, int64_t gh, int64_t gw);

}  // namespace vcm
