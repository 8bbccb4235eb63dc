// x265 per-CTU QP driver (built only with libx265-dev; see encoders.hpp for the recipe).
#include <x265.h>

#include <stdexcept>

#include "common.hpp"
#include "encoders.hpp"

namespace vcm {

namespace {
const char* const kReserved265[] = {"aq-mode", "aq-strength", "cutree", "no-cutree", "annexb", "repeat-headers",
                                    "qp", "input-res", "fps", "input-csp", "input-depth", nullptr};
}

struct X265Driver::Impl {
    const x265_api* api = nullptr;
    x265_param* param = nullptr;
    x265_encoder* enc = nullptr;
    x265_picture* pic = nullptr;
    int width = 0, height = 0, depth = 8;
    int64_t pts = 0;
    std::vector<float> offsets;
    bool rate_control = false;  // crf= or bitrate= given: the encoder picks frame QPs

    ~Impl() {
        if (enc) api->encoder_close(enc);
        if (pic) api->picture_free(pic);
        if (param) api->param_free(param);
    }

    void set(const std::string& key, const std::string& value) {
        const int r = api->param_parse(param, key.c_str(), value.c_str());
        if (r == X265_PARAM_BAD_NAME) throw ArgError("unknown x265 option '" + key + "'");
        if (r == X265_PARAM_BAD_VALUE) throw ArgError("bad value '" + value + "' for x265 option '" + key + "'");
        if (r != 0) throw ArgError("x265 rejected option '" + key + "=" + value + "'");
    }

    void append(std::string& out, x265_nal* nals, uint32_t n) {
        for (uint32_t i = 0; i < n; ++i) out.append(reinterpret_cast<const char*>(nals[i].payload), nals[i].sizeBytes);
    }
};

X265Driver::X265Driver(const EncoderConfig& cfg) : impl_(new Impl) {
    Impl& m = *impl_;
    if (cfg.width <= 0 || cfg.height <= 0 || cfg.width % 2 || cfg.height % 2)
        throw ArgError("x265 needs a positive, even picture size for 4:2:0, got " + std::to_string(cfg.width) + "x" +
                       std::to_string(cfg.height));
    if (cfg.fps_num <= 0 || cfg.fps_den <= 0) throw ArgError("frame rate must be positive");
    m.api = x265_api_get(cfg.bit_depth);
    if (!m.api || (cfg.bit_depth != 8 && cfg.bit_depth != 10 && cfg.bit_depth != 12))
        throw ArgError("this libx265 has no " + std::to_string(cfg.bit_depth) + "-bit encoder");
    m.width = cfg.width;
    m.height = cfg.height;
    m.depth = cfg.bit_depth;
    width_ = cfg.width;
    height_ = cfg.height;
    depth_ = cfg.bit_depth;
    m.param = m.api->param_alloc();
    if (!m.param) throw std::runtime_error("x265: out of memory");
    if (m.api->param_default_preset(m.param, cfg.preset.c_str(), nullptr) < 0)
        throw ArgError("unknown x265 preset '" + cfg.preset + "'");
    m.set("input-res", std::to_string(cfg.width) + "x" + std::to_string(cfg.height));
    m.set("fps", std::to_string(cfg.fps_num) + "/" + std::to_string(cfg.fps_den));
    m.set("input-csp", "i420");
    m.param->sourceBitDepth = cfg.bit_depth;
    // vcmtool defaults: low delay (no B-frames), one frame thread (reproducible, and x265's
    // output does not depend on its worker pool size), quiet, 64x64 CTUs and QGs, and no
    // x265 version/options SEI (about 2.3 KB per stream, which distorts rates of short clips;
    // vcmtool's JSON report records the encoder version).
    m.set("bframes", "0");
    m.set("info", "0");
    m.set("frame-threads", "1");
    m.set("log-level", "error");
    m.set("ctu", "64");
    m.set("qg-size", "64");
    for (const auto& kv : cfg.params) {
        if (const char* r = reserved_option(kv.first, kReserved265))
            throw ArgError(std::string("x265 option '") + r + "' is fixed by vcmtool's per-CTU QP driver");
        // "threads" (as for x264) sizes x265's worker pool; the bitstream does not depend on it.
        if (kv.first == "crf" || kv.first == "bitrate") m.rate_control = true;
        m.set(kv.first == "threads" ? std::string("pools") : kv.first, kv.second);
    }
    m.set("aq-mode", "1");
    m.set("aq-strength", "0.0001");
    m.set("cutree", "0");
    m.set("annexb", "1");
    m.set("repeat-headers", "1");
    m.enc = m.api->encoder_open(m.param);
    if (!m.enc) throw ArgError("x265 refused the settings (see its message above)");
    m.api->encoder_parameters(m.enc, m.param);
    m.pic = m.api->picture_alloc();
    m.api->picture_init(m.param, m.pic);
}

X265Driver::~X265Driver() = default;

std::string X265Driver::encode(const PlaneRef planes[3], const FrameQp& qp) {
    Impl& m = *impl_;
    const int base = prepare_offsets(qp, m.width, m.height, 51, 16, m.offsets);
    for (int i = 0; i < 3; ++i) {
        m.pic->planes[i] = const_cast<void*>(planes[i].data);
        m.pic->stride[i] = int(planes[i].stride);
    }
    m.pic->bitDepth = m.depth;
    m.pic->colorSpace = X265_CSP_I420;
    m.pic->sliceType = X265_TYPE_AUTO;
    m.pic->pts = m.pts++;
    // Under CRF/ABR (crf= or bitrate= among the options) the rate control sets the frame QP and
    // the offsets (grid - base) ride on it; with constant QP the frame QP is forced to base.
    const bool forced = base >= 0 && !m.rate_control;
    m.pic->forceqp = forced ? base + 1 : X265_QP_AUTO;
    m.pic->quantOffsets = m.offsets.empty() ? nullptr : m.offsets.data();
    x265_nal* nals = nullptr;
    uint32_t n = 0;
    const int r = m.api->encoder_encode(m.enc, &nals, &n, m.pic, nullptr);
    m.pic->quantOffsets = nullptr;
    if (r < 0) throw std::runtime_error("x265 failed to encode frame " + std::to_string(frames_in_));
    ++frames_in_;
    frames_out_ += r;
    last_base_ = forced ? base : -1;
    std::string out;
    m.append(out, nals, n);
    return out;
}

std::string X265Driver::flush() {
    Impl& m = *impl_;
    std::string out;
    for (;;) {
        x265_nal* nals = nullptr;
        uint32_t n = 0;
        const int r = m.api->encoder_encode(m.enc, &nals, &n, nullptr, nullptr);
        if (r < 0) throw std::runtime_error("x265 failed while flushing");
        m.append(out, nals, n);
        frames_out_ += r;
        if (r == 0) break;
    }
    return out;
}

std::string X265Driver::headers() {
    Impl& m = *impl_;
    x265_nal* nals = nullptr;
    uint32_t n = 0;
    if (m.api->encoder_headers(m.enc, &nals, &n) < 0) throw std::runtime_error("x265 could not write headers");
    std::string out;
    m.append(out, nals, n);
    return out;
}

std::string X265Driver::version() { return x265_version_str; }

std::vector<int> X265Driver::bit_depths() {
    std::vector<int> d;
    for (int b : {8, 10, 12})
        if (x265_api_get(b)) d.push_back(b);
    return d;
}

}  // namespace vcm
