// x264 per-macroblock QP driver (built only with libx264-dev; see encoders.hpp for the recipe).
#include <cstdint>
#include <stdexcept>

extern "C" {
#include <x264.h>
}

#include "common.hpp"
#include "encoders.hpp"

namespace vcm {

namespace {
const char* const kReserved264[] = {"aq-mode", "aq-strength", "mbtree", "no-mbtree", "annexb", "repeat-headers",
                                    "qp", "fps", "input-csp", "input-depth", "bitdepth", nullptr};
}

struct X264Driver::Impl {
    x264_t* enc = nullptr;
    x264_param_t param{};
    x264_picture_t pic{};
    int width = 0, height = 0, depth = 8;
    int64_t pts = 0;
    std::vector<float> offsets;
    bool rate_control = false;  // crf= or bitrate= given: the encoder picks frame QPs

    ~Impl() {
        if (enc) x264_encoder_close(enc);
    }

    void set(const std::string& key, const std::string& value) {
        const int r = x264_param_parse(&param, key.c_str(), value.c_str());
        if (r == X264_PARAM_BAD_NAME) throw ArgError("unknown x264 option '" + key + "'");
        if (r == X264_PARAM_BAD_VALUE) throw ArgError("bad value '" + value + "' for x264 option '" + key + "'");
        if (r != 0) throw ArgError("x264 rejected option '" + key + "=" + value + "'");
    }

    static void append(std::string& out, x264_nal_t* nals, int n, int size) {
        // x264 lays the NAL units of one call out back to back.
        if (size > 0 && n > 0) out.append(reinterpret_cast<const char*>(nals[0].p_payload), size_t(size));
    }
};

X264Driver::X264Driver(const EncoderConfig& cfg) : impl_(new Impl) {
    Impl& m = *impl_;
    if (cfg.width <= 0 || cfg.height <= 0 || cfg.width % 2 || cfg.height % 2)
        throw ArgError("x264 needs a positive, even picture size for 4:2:0, got " + std::to_string(cfg.width) + "x" +
                       std::to_string(cfg.height));
    if (cfg.fps_num <= 0 || cfg.fps_den <= 0) throw ArgError("frame rate must be positive");
    if (cfg.bit_depth != 8 && cfg.bit_depth != 10) throw ArgError("x264 encodes 8 or 10 bits, not " + std::to_string(cfg.bit_depth));
    if (X264_BIT_DEPTH != 0 && X264_BIT_DEPTH != cfg.bit_depth)
        throw ArgError("this libx264 was built for " + std::to_string(X264_BIT_DEPTH) + "-bit only");
    m.width = cfg.width;
    m.height = cfg.height;
    m.depth = cfg.bit_depth;
    width_ = cfg.width;
    height_ = cfg.height;
    depth_ = cfg.bit_depth;
    if (x264_param_default_preset(&m.param, cfg.preset.c_str(), nullptr) < 0)
        throw ArgError("unknown x264 preset '" + cfg.preset + "'");
    m.param.i_width = cfg.width;
    m.param.i_height = cfg.height;
    m.param.i_fps_num = uint32_t(cfg.fps_num);
    m.param.i_fps_den = uint32_t(cfg.fps_den);
    m.param.i_timebase_num = uint32_t(cfg.fps_den);
    m.param.i_timebase_den = uint32_t(cfg.fps_num);
    m.param.b_vfr_input = 0;
    m.param.i_bitdepth = cfg.bit_depth;
    m.param.i_csp = X264_CSP_I420 | (cfg.bit_depth > 8 ? X264_CSP_HIGH_DEPTH : 0);
    m.param.i_log_level = X264_LOG_ERROR;
    // vcmtool defaults: low delay (no B-frames), one thread (reproducible).
    m.set("bframes", "0");
    m.set("threads", "1");
    for (const auto& kv : cfg.params) {
        if (const char* r = reserved_option(kv.first, kReserved264))
            throw ArgError(std::string("x264 option '") + r + "' is fixed by vcmtool's per-CTU QP driver");
        if (kv.first == "crf" || kv.first == "bitrate") m.rate_control = true;
        m.set(kv.first, kv.second);
    }
    m.param.rc.i_aq_mode = X264_AQ_VARIANCE;
    m.param.rc.f_aq_strength = 0.0001f;
    m.param.rc.b_mb_tree = 0;
    m.param.b_annexb = 1;
    m.param.b_repeat_headers = 1;
    m.enc = x264_encoder_open(&m.param);
    if (!m.enc) throw ArgError("x264 refused the settings");
    x264_encoder_parameters(m.enc, &m.param);
    x264_picture_init(&m.pic);
}

X264Driver::~X264Driver() = default;

std::string X264Driver::encode(const PlaneRef planes[3], const FrameQp& qp) {
    Impl& m = *impl_;
    // x264's QP scale grows by 6 per extra bit (10-bit: 0..63).
    const int base = prepare_offsets(qp, m.width, m.height, 51 + 6 * (m.depth - 8), 16, m.offsets);
    x264_picture_init(&m.pic);
    m.pic.img.i_csp = m.param.i_csp;
    m.pic.img.i_plane = 3;
    for (int i = 0; i < 3; ++i) {
        m.pic.img.plane[i] = static_cast<uint8_t*>(const_cast<void*>(planes[i].data));
        m.pic.img.i_stride[i] = int(planes[i].stride);
    }
    m.pic.i_type = X264_TYPE_AUTO;
    m.pic.i_pts = m.pts++;
    // Under CRF/ABR (crf= or bitrate= among the options) the rate control sets the frame QP and
    // the offsets (grid - base) ride on it; with constant QP the frame QP is forced to base.
    const bool forced = base >= 0 && !m.rate_control;
    m.pic.i_qpplus1 = forced ? base + 1 : X264_QP_AUTO;
    // x264 consumes the offsets inside x264_encoder_encode (adaptive quant runs there).
    m.pic.prop.quant_offsets = m.offsets.empty() ? nullptr : m.offsets.data();
    m.pic.prop.quant_offsets_free = nullptr;
    x264_nal_t* nals = nullptr;
    int n = 0;
    x264_picture_t out_pic;
    const int size = x264_encoder_encode(m.enc, &nals, &n, &m.pic, &out_pic);
    if (size < 0) throw std::runtime_error("x264 failed to encode frame " + std::to_string(frames_in_));
    ++frames_in_;
    if (size > 0) ++frames_out_;
    last_base_ = forced ? base : -1;
    std::string out;
    Impl::append(out, nals, n, size);
    return out;
}

std::string X264Driver::flush() {
    Impl& m = *impl_;
    std::string out;
    while (x264_encoder_delayed_frames(m.enc) > 0) {
        x264_nal_t* nals = nullptr;
        int n = 0;
        x264_picture_t out_pic;
        const int size = x264_encoder_encode(m.enc, &nals, &n, nullptr, &out_pic);
        if (size < 0) throw std::runtime_error("x264 failed while flushing");
        if (size > 0) ++frames_out_;
        Impl::append(out, nals, n, size);
    }
    return out;
}

std::string X264Driver::headers() {
    Impl& m = *impl_;
    x264_nal_t* nals = nullptr;
    int n = 0;
    const int size = x264_encoder_headers(m.enc, &nals, &n);
    if (size < 0) throw std::runtime_error("x264 could not write headers");
    std::string out;
    Impl::append(out, nals, n, size);
    return out;
}

std::string X264Driver::version() { return X264_POINTVER; }

}  // namespace vcm
