// Per-CTU QP drivers on the C APIs of libx265 and libx264 (compiled only when pkg-config finds
// them: VCMTOOL_HAVE_X265 / VCMTOOL_HAVE_X264).
//
// Recipe (docs/design.md, "Encoder backends"): adaptive quantization on with a negligible strength
// (aq-strength 0.0001; 0 makes the encoders switch AQ off and ignore offsets), cutree / mbtree
// off, qg-size 64, the frame QP forced to `base` and per-16x16-block offsets = CTU QP - base.
// With crf= (or bitrate=) among the options the encoder's rate control picks each frame's QP
// instead and the same offsets ride on it (nothing is forced).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vcm {

using Params = std::vector<std::pair<std::string, std::string>>;

struct EncoderConfig {
    int width = 0, height = 0;
    int fps_num = 25, fps_den = 1;
    int bit_depth = 8;
    std::string preset = "medium";
    Params params;  // encoder options by name, applied after vcmtool's defaults
};

struct PlaneRef {
    const void* data;
    int64_t stride;  // bytes
};

// Per-frame QP control. grid == nullptr: the encoder's own rate control, or only `base` when
// has_base. Otherwise grid is gh x gw absolute QPs on ctu x ctu cells and base defaults to the
// rounded mean of the grid.
struct FrameQp {
    const int32_t* grid = nullptr;
    int64_t gh = 0, gw = 0, ctu = 64;
    bool has_base = false;
    int base = 0;
};

// Picture geometry and frame counters both drivers keep and report to Python.
class DriverState {
   public:
    int width() const { return width_; }
    int height() const { return height_; }
    int bit_depth() const { return depth_; }
    int frames_in() const { return frames_in_; }
    int frames_out() const { return frames_out_; }
    int last_base() const { return last_base_; }

   protected:
    int width_ = 0, height_ = 0, depth_ = 8;
    int frames_in_ = 0, frames_out_ = 0, last_base_ = -1;
};

class X265Driver : public DriverState {
   public:
    explicit X265Driver(const EncoderConfig& cfg);
    ~X265Driver();
    X265Driver(const X265Driver&) = delete;
    X265Driver& operator=(const X265Driver&) = delete;
    std::string encode(const PlaneRef planes[3], const FrameQp& qp);
    std::string flush();
    std::string headers();
    static std::string version();
    static std::vector<int> bit_depths();

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

class X264Driver : public DriverState {
   public:
    explicit X264Driver(const EncoderConfig& cfg);
    ~X264Driver();
    X264Driver(const X264Driver&) = delete;
    X264Driver& operator=(const X264Driver&) = delete;
    std::string encode(const PlaneRef planes[3], const FrameQp& qp);
    std::string flush();
    std::string headers();
    static std::string version();

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Shared by both drivers (encoders_common.cpp): validate the grid against the picture and QP
// range, pick the base QP and fill per-block offsets (block x block pixels).
int prepare_offsets(const FrameQp& qp, int width, int height, int qp_max, int64_t block,
                    std::vector<float>& offsets);
// Options the per-CTU recipe or the constructor fixes; returns a reason if `key` is one.
const char* reserved_option(const std::string& key, const char* const* reserved);

}  // namespace vcm
