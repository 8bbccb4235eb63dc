// Python bindings of vcmtool._native. Callers use vcmtool.native (the facade), never this module
// directly: the facade validates arguments, converts errors and falls back to numpy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "annexb.hpp"
#include "bits.hpp"
#include "common.hpp"
#include "encoders.hpp"
#include "pool.hpp"
#include "serialize.hpp"

namespace py = pybind11;
using namespace vcm;

namespace {

// A contiguous read-only byte view of any buffer-protocol object (bytes, bytearray, memoryview,
// numpy arrays), released on destruction.
class ByteView {
   public:
    explicit ByteView(const py::handle& obj) {
        if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) {
            // A strided buffer is a bad argument (ValueError, as in vcmtool.native); a non-buffer
            // keeps Python's TypeError.
            if (PyErr_ExceptionMatches(PyExc_BufferError)) {
                PyErr_Clear();
                throw ArgError("buffer must be C-contiguous");
            }
            throw py::error_already_set();
        }
        ok_ = true;
    }
    ~ByteView() {
        if (ok_) PyBuffer_Release(&view_);
    }
    ByteView(const ByteView&) = delete;
    ByteView& operator=(const ByteView&) = delete;
    ByteView(ByteView&& o) noexcept : view_(o.view_), ok_(o.ok_) { o.ok_ = false; }
    const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
    int64_t size() const { return int64_t(view_.len); }

   private:
    Py_buffer view_{};
    bool ok_ = false;
};

// bytes of size n, filled by fill(char*) without the GIL.
template <typename F>
py::bytes make_bytes(int64_t n, F&& fill) {
    PyObject* o = PyBytes_FromStringAndSize(nullptr, Py_ssize_t(n));
    if (!o) throw py::error_already_set();
    py::bytes b = py::reinterpret_steal<py::bytes>(o);
    char* p = PyBytes_AS_STRING(o);
    {
        py::gil_scoped_release nogil;
        fill(p);
    }
    return b;
}

Codec parse_codec(const std::string& c) {
    if (c == "hevc" || c == "h265") return Codec::HEVC;
    if (c == "vvc" || c == "h266") return Codec::VVC;
    if (c == "avc" || c == "h264") return Codec::AVC;
    throw ArgError("codec must be 'hevc', 'vvc' or 'avc', got '" + c + "'");
}

char dtype_kind(const py::array& a) { return a.dtype().kind(); }

bool is_u8_like(const py::array& a) {
    const char k = dtype_kind(a);
    return (k == 'u' || k == 'b') && a.itemsize() == 1;
}

void require_ndim(const py::array& a, py::ssize_t nd, const char* what) {
    if (a.ndim() != nd)
        throw ArgError(std::string(what) + " must have " + std::to_string(nd) + " dimensions, got " +
                       std::to_string(a.ndim()));
}

// Row stride (in elements) of a 2-D array whose rows are contiguous.
template <typename T>
ptrdiff_t row_stride(const py::array& a, const char* what) {
    if (a.shape(1) > 1 && a.strides(1) != py::ssize_t(sizeof(T)))
        throw ArgError(std::string(what) + ": rows must be contiguous");
    if (a.strides(0) % py::ssize_t(sizeof(T)) != 0 || a.strides(0) < 0)
        throw ArgError(std::string(what) + ": unsupported row stride");
    return ptrdiff_t(a.strides(0) / py::ssize_t(sizeof(T)));
}

PoolMode parse_mode(const std::string& m) {
    if (m == "min") return PoolMode::Min;
    if (m == "max") return PoolMode::Max;
    if (m == "mean") return PoolMode::Mean;
    throw ArgError("pool mode must be 'min', 'max' or 'mean', got '" + m + "'");
}

py::array pool_ctu(const py::array& a, int64_t ctu, const std::string& mode_s) {
    require_ndim(a, 2, "pixel map");
    const PoolMode mode = parse_mode(mode_s);
    if (ctu < 1) throw ArgError("ctu must be >= 1");
    const int64_t h = a.shape(0), w = a.shape(1);
    const int64_t gh = ceil_div(h, ctu), gw = ceil_div(w, ctu);
    if (is_u8_like(a) && dtype_kind(a) == 'u') {
        const ptrdiff_t st = row_stride<uint8_t>(a, "pixel map");
        const uint8_t* src = static_cast<const uint8_t*>(a.data());
        if (mode == PoolMode::Mean) {
            py::array_t<float> out({gh, gw});
            float* o = out.mutable_data();
            py::gil_scoped_release nogil;
            pool_u8(src, st, h, w, ctu, mode, nullptr, o);
            return std::move(out);
        }
        py::array_t<uint8_t> out({gh, gw});
        uint8_t* o = out.mutable_data();
        py::gil_scoped_release nogil;
        pool_u8(src, st, h, w, ctu, mode, o, nullptr);
        return std::move(out);
    }
    if (dtype_kind(a) == 'f' && a.itemsize() == 4) {
        const ptrdiff_t st = row_stride<float>(a, "pixel map");
        const float* src = static_cast<const float*>(a.data());
        py::array_t<float> out({gh, gw});
        float* o = out.mutable_data();
        py::gil_scoped_release nogil;
        pool_f32(src, st, h, w, ctu, mode, o);
        return std::move(out);
    }
    throw ArgError("pixel map must be uint8 or float32");
}

py::array_t<uint8_t> rasterize_boxes_py(int64_t h, int64_t w, int64_t ctu,
                                         py::array_t<float, py::array::c_style> boxes,
                                         py::array_t<uint8_t, py::array::c_style> qps, int background) {
    if (boxes.ndim() != 2 || boxes.shape(1) != 4) throw ArgError("boxes must be (n, 4)");
    if (qps.ndim() != 1 || qps.shape(0) != boxes.shape(0)) throw ArgError("need one QP per box");
    if (background < 0 || background > 255) throw ArgError("background QP must fit in uint8");
    if (ctu < 1 || h < 0 || w < 0) throw ArgError("bad picture size or ctu");
    // h and w are plain numbers from the caller: the grid they ask for must be addressable.
    const int64_t gh = ceil_div(h, ctu), gw = ceil_div(w, ctu);
    checked_mul(gh, gw, "CTU grid");
    py::array_t<uint8_t> out({gh, gw});
    rasterize_boxes(h, w, ctu, boxes.data(), qps.data(), boxes.shape(0), uint8_t(background), out.mutable_data());
    return out;
}

py::array_t<uint8_t> rasterize_masks_py(const py::array& masks, py::array_t<uint8_t, py::array::c_style> qps,
                                         int64_t ctu, int background) {
    require_ndim(masks, 3, "masks");
    if (!is_u8_like(masks)) throw ArgError("masks must be bool or uint8");
    if (qps.ndim() != 1 || qps.shape(0) != masks.shape(0)) throw ArgError("need one QP per mask");
    if (background < 0 || background > 255) throw ArgError("background QP must fit in uint8");
    if (ctu < 1) throw ArgError("ctu must be >= 1");
    const int64_t n = masks.shape(0), h = masks.shape(1), w = masks.shape(2);
    if (n > 0 && h > 0 && w > 1 && masks.strides(2) != 1) throw ArgError("masks: rows must be contiguous");
    py::array_t<uint8_t> out({ceil_div(h, ctu), ceil_div(w, ctu)});
    const uint8_t* src = static_cast<const uint8_t*>(masks.data());
    uint8_t* o = out.mutable_data();
    const uint8_t* q = qps.data();
    const ptrdiff_t ms = masks.strides(0), rs = masks.strides(1);
    py::gil_scoped_release nogil;
    rasterize_masks(src, ms, rs, n, h, w, ctu, q, uint8_t(background), o);
    return out;
}

// A C-contiguous integer array's raw data, read without the GIL.
struct IntData {
    const void* ptr;
    char kind;
    py::ssize_t itemsize;
    int64_t n;
};

IntData int_data(const py::array& a) {
    const char k = dtype_kind(a);
    const py::ssize_t sz = a.itemsize();
    const bool ok = (k == 'u' && (sz == 1 || sz == 2)) || (k == 'i' && (sz == 1 || sz == 2 || sz == 4 || sz == 8));
    if (!ok) throw ArgError("expected an int8/uint8/int16/uint16/int32/int64 array");
    if (!(a.flags() & py::array::c_style)) throw ArgError("expected a C-contiguous array");
    return IntData{a.data(), k, sz, int64_t(a.size())};
}

// Narrow `n` values starting at element `first` to bytes; first out-of-range index or -1.
int64_t narrow_any(const IntData& a, int64_t first, int64_t n, int64_t lo, int64_t hi, uint8_t* dst) {
    const char* p = static_cast<const char*>(a.ptr) + first * a.itemsize;
    if (a.kind == 'u' && a.itemsize == 1) return narrow_u8(reinterpret_cast<const uint8_t*>(p), n, lo, hi, dst);
    if (a.kind == 'i' && a.itemsize == 1) return narrow_u8(reinterpret_cast<const int8_t*>(p), n, lo, hi, dst);
    if (a.kind == 'u' && a.itemsize == 2) return narrow_u8(reinterpret_cast<const uint16_t*>(p), n, lo, hi, dst);
    if (a.kind == 'i' && a.itemsize == 2) return narrow_u8(reinterpret_cast<const int16_t*>(p), n, lo, hi, dst);
    if (a.kind == 'i' && a.itemsize == 4) return narrow_u8(reinterpret_cast<const int32_t*>(p), n, lo, hi, dst);
    return narrow_u8(reinterpret_cast<const int64_t*>(p), n, lo, hi, dst);
}

int64_t value_at(const IntData& a, int64_t i) {
    const char* p = static_cast<const char*>(a.ptr) + i * a.itemsize;
    switch (a.itemsize) {
        case 1: return a.kind == 'u' ? int64_t(*reinterpret_cast<const uint8_t*>(p)) : int64_t(*reinterpret_cast<const int8_t*>(p));
        case 2: return a.kind == 'u' ? int64_t(*reinterpret_cast<const uint16_t*>(p)) : int64_t(*reinterpret_cast<const int16_t*>(p));
        case 4: return *reinterpret_cast<const int32_t*>(p);
        default: return *reinterpret_cast<const int64_t*>(p);
    }
}

py::bytes qpm_encode(const py::array& maps, int ctu) {
    require_ndim(maps, 3, "QP maps");
    const IntData src = int_data(maps);
    const int64_t f = maps.shape(0), gh = maps.shape(1), gw = maps.shape(2);
    if (ctu < 0 || ctu > 0xffff || gw > 0xffff || gh > 0xffff || f > 0xffffffffLL)
        throw ArgError("ctu, grid or frame count too large for a .qpm header");
    int64_t bad = -1;
    // Header: struct "<4sHHHI" = magic, ctu, grid_w, grid_h, frames (14 bytes).
    // f * gh * gw is the array's size when no dimension is 0 (numpy keeps that in range); checked
    // anyway, so the header fields alone can never size the output.
    const int64_t total = checked_add(14, checked_mul(checked_mul(f, gh, "QP maps"), gw, "QP maps"), "QP maps");
    py::bytes out = make_bytes(total, [&](char* p) {
        uint8_t* u = reinterpret_cast<uint8_t*>(p);
        std::memcpy(u, "QPM1", 4);
        u[4] = uint8_t(ctu);
        u[5] = uint8_t(ctu >> 8);
        u[6] = uint8_t(gw);
        u[7] = uint8_t(gw >> 8);
        u[8] = uint8_t(gh);
        u[9] = uint8_t(gh >> 8);
        put_le32(u + 10, uint32_t(f));
        bad = narrow_any(src, 0, src.n, 0, 255, u + 14);
    });
    if (bad >= 0) throw ArgError("QPs must fit in uint8");
    return out;
}

py::tuple qpm_check(const py::handle& buf, int64_t frames, int64_t frame_size, int max_qp) {
    ByteView v(buf);
    if (frames < 0 || frame_size < 0) throw ArgError("frame count and frame size must be >= 0");
    // frames * frame_size can overflow (and wrap below the buffer size): compare by division.
    if (frame_size != 0 && uint64_t(frames) > uint64_t(v.size()) / uint64_t(frame_size))
        throw ArgError("buffer of " + std::to_string(v.size()) + " bytes is shorter than " + std::to_string(frames) +
                       " frames of " + std::to_string(frame_size) + " bytes");
    int bad_max = 0;
    int64_t f;
    {
        py::gil_scoped_release nogil;
        f = first_frame_above(v.data(), frames, frame_size, max_qp, &bad_max);
    }
    return py::make_tuple(f, bad_max);
}

py::bytes kvazaar_roi_py(const py::array& d) {
    require_ndim(d, 3, "delta maps");
    const IntData src = int_data(d);
    const int64_t f = d.shape(0), gh = d.shape(1), gw = d.shape(2);
    // The record header holds int32 sizes; an empty array can still have huge (or, with zero
    // cells, very many) dimensions, so the output size is checked, not assumed.
    if (gw > 0x7fffffff || gh > 0x7fffffff) throw ArgError("kvazaar ROI grid too large for its int32 header");
    const int64_t n = checked_mul(gh, gw, "kvazaar ROI");
    const int64_t total = checked_mul(f, checked_add(8, n, "kvazaar ROI"), "kvazaar ROI");
    int64_t bad = -1;
    py::bytes out = make_bytes(total, [&](char* p) {
        uint8_t* o = reinterpret_cast<uint8_t*>(p);
        for (int64_t i = 0; i < f; ++i, o += 8 + n) {
            put_le32(o, uint32_t(gw));
            put_le32(o + 4, uint32_t(gh));
            const int64_t b = narrow_any(src, i * n, n, -128, 127, o + 8);
            if (b >= 0 && bad < 0) bad = i * n + b;
        }
    });
    if (bad >= 0) throw ArgError("kvazaar ROI delta " + std::to_string(value_at(src, bad)) + " does not fit in int8");
    return out;
}

py::array_t<float> block_offsets_py(py::array_t<int32_t, py::array::c_style | py::array::forcecast> grid,
                                    py::array_t<double, py::array::c_style | py::array::forcecast> base, int64_t ctu,
                                    int64_t block, int64_t h, int64_t w) {
    require_ndim(grid, 3, "QP grids");
    const int64_t f = grid.shape(0);
    if (base.ndim() != 1 || base.shape(0) != f) throw ArgError("need one base QP per frame");
    if (h < 1 || w < 1 || block < 1 || ctu < 1) throw ArgError("bad picture size, ctu or block");
    // Sizes and grid coverage before the output exists (a grid that does not cover h x w would
    // be read out of bounds; a huge h with a huge ctu asks for an unaddressable output).
    check_block_offsets(f, grid.shape(1), grid.shape(2), ctu, block, h, w);
    py::array_t<float> out({f, ceil_div(h, block), ceil_div(w, block)});
    float* o = out.mutable_data();
    block_offsets(grid.data(), f, grid.shape(1), grid.shape(2), ctu, base.data(), block, h, w, o);
    return out;
}

std::string svtav1_roi_py(py::array_t<int32_t, py::array::c_style | py::array::forcecast> off,
                          py::array_t<int64_t, py::array::c_style | py::array::forcecast> frames) {
    require_ndim(off, 3, "offset maps");
    if (frames.ndim() != 1 || frames.shape(0) != off.shape(0)) throw ArgError("need one frame number per map");
    return svtav1_roi(off.data(), frames.data(), off.shape(0), off.shape(1), off.shape(2));
}

std::string csv_py(py::array_t<int32_t, py::array::c_style | py::array::forcecast> maps) {
    require_ndim(maps, 3, "QP maps");
    return csv(maps.data(), maps.shape(0), maps.shape(1), maps.shape(2));
}

// Framed bit packing: uint8 ndim (1..8), ndim x uint32 LE dims, ceil(prod/8) bytes MSB first.
constexpr int kMaxDims = 8;

py::bytes pack_bits_py(const py::array& a) {
    if (!is_u8_like(a)) throw ArgError("pack_bits needs a bool or uint8 array of 0/1");
    if (!(a.flags() & py::array::c_style)) throw ArgError("pack_bits needs a C-contiguous array");
    const py::ssize_t nd = a.ndim();
    if (nd < 1 || nd > kMaxDims) throw ArgError("pack_bits handles 1 to 8 dimensions");
    for (py::ssize_t i = 0; i < nd; ++i)
        if (uint64_t(a.shape(i)) > 0xffffffffULL) throw ArgError("dimension too large for the uint32 frame header");
    const int64_t n = int64_t(a.size());
    const int64_t hdr = 1 + 4 * nd;
    int64_t bad = -1;
    const uint8_t* src = static_cast<const uint8_t*>(a.data());
    py::bytes out = make_bytes(hdr + ceil_div(n, 8), [&](char* p) {
        uint8_t* u = reinterpret_cast<uint8_t*>(p);
        u[0] = uint8_t(nd);
        for (py::ssize_t i = 0; i < nd; ++i) put_le32(u + 1 + 4 * i, uint32_t(a.shape(i)));
        bad = pack_bits(src, n, u + hdr);
    });
    if (bad >= 0) throw ArgError("pack_bits: value " + std::to_string(int(src[bad])) + " at flat index " +
                                 std::to_string(bad) + " is not 0 or 1");
    return out;
}

// Returns (array, end offset). Throws FormatError on a malformed frame.
py::tuple unpack_bits_py(const py::handle& buf, int64_t offset) {
    ByteView v(buf);
    const uint8_t* d = v.data();
    const int64_t n = v.size();
    if (offset < 0 || offset > n) throw ArgError("offset outside the buffer");  // before any read
    if (offset == n) throw FormatError("packed bits: no frame header at byte " + std::to_string(offset));
    const int nd = d[offset];
    if (nd < 1 || nd > kMaxDims)
        throw FormatError("packed bits: bad dimension count " + std::to_string(nd) + " at byte " + std::to_string(offset));
    const int64_t hdr = 1 + 4 * int64_t(nd);
    if (n - offset < hdr) throw FormatError("packed bits: truncated frame header at byte " + std::to_string(offset));
    std::vector<py::ssize_t> shape(static_cast<size_t>(nd));
    // Total bits without overflow: a product beyond what the buffer could hold is rejected as
    // soon as it passes that limit (dims are >= 1 then, so the product only grows).
    const uint64_t limit = (uint64_t(n - offset - hdr) + 1) * 8;
    bool zero = false;
    for (int i = 0; i < nd; ++i) {
        const uint32_t dim = get_le32(d + offset + 1 + 4 * i);
        shape[size_t(i)] = py::ssize_t(dim);
        zero |= dim == 0;
    }
    uint64_t total = zero ? 0 : 1;
    for (int i = 0; i < nd && !zero; ++i) {
        const uint64_t dim = uint64_t(shape[size_t(i)]);
        if (dim > limit / total)
            throw FormatError("packed bits: frame at byte " + std::to_string(offset) + " declares more bits than the " +
                              std::to_string(n - offset - hdr) + " bytes that follow");
        total *= dim;
    }
    const int64_t nbytes = int64_t((total + 7) / 8);
    if (nbytes > n - offset - hdr)
        throw FormatError("packed bits: frame at byte " + std::to_string(offset) + " needs " + std::to_string(nbytes) +
                          " payload bytes, " + std::to_string(n - offset - hdr) + " present");
    const uint8_t* payload = d + offset + hdr;
    if (total % 8 && (payload[nbytes - 1] & uint8_t(0xff >> (total % 8))))
        throw FormatError("packed bits: nonzero padding bits in the frame at byte " + std::to_string(offset));
    py::array_t<uint8_t> out(shape);
    uint8_t* o = out.mutable_data();
    {
        py::gil_scoped_release nogil;
        unpack_bits(payload, int64_t(total), o);
    }
    return py::make_tuple(out, offset + hdr + nbytes);
}

py::array_t<int64_t> split_nals_py(const py::handle& buf, const std::string& codec) {
    ByteView v(buf);
    const Codec c = parse_codec(codec);
    std::vector<Nal> nals;
    {
        py::gil_scoped_release nogil;
        nals = split_nals(v.data(), v.size(), c);
    }
    py::array_t<int64_t> out({py::ssize_t(nals.size()), py::ssize_t(3)});
    int64_t* o = out.mutable_data();
    for (size_t i = 0; i < nals.size(); ++i) {
        o[3 * i] = nals[i].offset;
        o[3 * i + 1] = nals[i].size;
        o[3 * i + 2] = nals[i].type;
    }
    return out;
}

py::array_t<int64_t> access_units_py(const py::handle& buf, const std::string& codec) {
    ByteView v(buf);
    const Codec c = parse_codec(codec);
    std::vector<AccessUnit> aus;
    {
        py::gil_scoped_release nogil;
        aus = access_units(v.data(), split_nals(v.data(), v.size(), c), c);
    }
    py::array_t<int64_t> out({py::ssize_t(aus.size()), py::ssize_t(3)});
    int64_t* o = out.mutable_data();
    for (size_t i = 0; i < aus.size(); ++i) {
        o[3 * i] = aus[i].first_nal;
        o[3 * i + 1] = aus[i].insert_nal;
        o[3 * i + 2] = aus[i].end_nal;
    }
    return out;
}

void check_uuid(const ByteView& u) {
    if (u.size() != 16) throw ArgError("uuid must be 16 bytes");
}

py::bytes insert_sei_py(const py::handle& buf, const py::list& payloads, const std::string& codec,
                        const py::handle& uuid) {
    ByteView v(buf), u(uuid);
    check_uuid(u);
    const Codec c = parse_codec(codec);
    std::vector<ByteView> views;
    views.reserve(payloads.size());
    std::vector<Span> spans;
    spans.reserve(payloads.size());
    for (const auto& p : payloads) {
        if (p.is_none()) {
            spans.push_back(Span{nullptr, -1});
            continue;
        }
        views.emplace_back(p);
        spans.push_back(Span{views.back().data(), views.back().size()});
    }
    SeiPlan plan;
    {
        py::gil_scoped_release nogil;
        plan = plan_sei(v.data(), v.size(), c, spans, u.data());
    }
    return make_bytes(plan.out_size, [&](char* p) { write_sei(v.data(), v.size(), plan, reinterpret_cast<uint8_t*>(p)); });
}

py::list extract_sei_py(const py::handle& buf, const std::string& codec, const py::handle& uuid) {
    ByteView v(buf), u(uuid);
    check_uuid(u);
    const Codec c = parse_codec(codec);
    std::vector<std::pair<int64_t, std::string>> found;
    {
        py::gil_scoped_release nogil;
        found = extract_sei(v.data(), v.size(), c, u.data());
    }
    py::list out;
    for (auto& f : found) out.append(py::make_tuple(f.first, py::bytes(f.second)));
    return out;
}

py::bytes escape_py(const py::handle& buf) {
    ByteView v(buf);
    std::string s;
    escape_rbsp(v.data(), v.size(), s);
    return py::bytes(s);
}

py::bytes unescape_py(const py::handle& buf) {
    ByteView v(buf);
    std::string s;
    unescape_rbsp(v.data(), v.size(), s);
    return py::bytes(s);
}

// ---- encoders ----------------------------------------------------------------------------

EncoderConfig make_config(int width, int height, int fps_num, int fps_den, int bit_depth, const std::string& preset,
                          const py::dict& params) {
    EncoderConfig cfg;
    cfg.width = width;
    cfg.height = height;
    cfg.fps_num = fps_num;
    cfg.fps_den = fps_den;
    cfg.bit_depth = bit_depth;
    cfg.preset = preset;
    for (const auto& kv : params) cfg.params.emplace_back(py::str(kv.first), py::str(kv.second));
    return cfg;
}

// Checks the three 4:2:0 planes and fills plane references.
void get_planes(const py::array& y, const py::array& u, const py::array& v, int width, int height, int depth,
                PlaneRef out[3]) {
    const py::array* ps[3] = {&y, &u, &v};
    const char* names[3] = {"y", "u", "v"};
    const py::ssize_t isz = depth > 8 ? 2 : 1;
    for (int i = 0; i < 3; ++i) {
        const py::array& p = *ps[i];
        const int64_t ph = i ? height / 2 : height, pw = i ? width / 2 : width;
        if (p.ndim() != 2 || p.shape(0) != ph || p.shape(1) != pw)
            throw ArgError(std::string("plane ") + names[i] + " must be " + std::to_string(ph) + "x" + std::to_string(pw) +
                           " (rows x cols) for 4:2:0");
        if (dtype_kind(p) != 'u' || p.itemsize() != isz)
            throw ArgError(std::string("plane ") + names[i] + (depth > 8 ? " must be uint16" : " must be uint8") +
                           " for " + std::to_string(depth) + "-bit input");
        if ((pw > 1 && p.strides(1) != isz) || p.strides(0) <= 0)
            throw ArgError(std::string("plane ") + names[i] + ": rows must be contiguous");
        // The encoders take int strides: a wider row step would be truncated, not refused.
        if (p.strides(0) > std::numeric_limits<int>::max())
            throw ArgError(std::string("plane ") + names[i] + ": row stride too large");
        out[i] = PlaneRef{p.data(), int64_t(p.strides(0))};
    }
}

struct QpArgs {
    py::array_t<int32_t, py::array::c_style | py::array::forcecast> grid;
    FrameQp qp;
};

void get_qp(const py::object& grid, const py::object& base, int64_t ctu, QpArgs& a) {
    if (!grid.is_none()) {
        py::array g = py::array::ensure(grid);
        if (!g) throw ArgError("qp_grid must be an integer array");
        const char k = dtype_kind(g);
        if (k != 'i' && k != 'u') throw ArgError("qp_grid must hold integers");
        a.grid = py::array_t<int32_t, py::array::c_style | py::array::forcecast>::ensure(g);
        if (a.grid.ndim() != 2) throw ArgError("qp_grid must be 2-D (rows x cols)");
        a.qp.grid = a.grid.data();
        a.qp.gh = a.grid.shape(0);
        a.qp.gw = a.grid.shape(1);
    }
    if (ctu < 1) throw ArgError("ctu must be >= 1");
    a.qp.ctu = ctu;
    if (!base.is_none()) {
        // Any Python integer: out-of-range values are an argument error here, not a cast
        // failure (RuntimeError) or a silent wrap to int.
        const py::int_ b = py::int_(base);
        int overflow = 0;
        const long long v = PyLong_AsLongLongAndOverflow(b.ptr(), &overflow);
        if (v == -1 && PyErr_Occurred()) throw py::error_already_set();
        if (overflow || v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
            throw ArgError("base QP " + std::string(py::str(b)) + " is out of range");
        a.qp.has_base = true;
        a.qp.base = int(v);
    }
}

template <typename Driver>
void bind_encoder(py::module_& m, const char* name, const char* doc) {
    py::class_<Driver>(m, name, doc)
        .def(py::init([](int width, int height, int fps_num, int fps_den, int bit_depth, const std::string& preset,
                         const py::dict& params) {
                 return new Driver(make_config(width, height, fps_num, fps_den, bit_depth, preset, params));
             }),
             py::arg("width"), py::arg("height"), py::arg("fps_num") = 25, py::arg("fps_den") = 1,
             py::arg("bit_depth") = 8, py::arg("preset") = "medium", py::arg("params") = py::dict())
        .def(
            "encode",
            [](Driver& d, const py::array& y, const py::array& u, const py::array& v, const py::object& qp_grid,
               const py::object& base_qp, int64_t ctu) {
                PlaneRef planes[3];
                get_planes(y, u, v, d.width(), d.height(), d.bit_depth(), planes);
                QpArgs a;
                get_qp(qp_grid, base_qp, ctu, a);
                std::string out;
                {
                    py::gil_scoped_release nogil;
                    out = d.encode(planes, a.qp);
                }
                return py::bytes(out);
            },
            py::arg("y"), py::arg("u"), py::arg("v"), py::arg("qp_grid") = py::none(), py::arg("base_qp") = py::none(),
            py::arg("ctu") = 64)
        .def("flush",
             [](Driver& d) {
                 std::string out;
                 {
                     py::gil_scoped_release nogil;
                     out = d.flush();
                 }
                 return py::bytes(out);
             })
        .def("headers", [](Driver& d) { return py::bytes(d.headers()); })
        .def_static("version", &Driver::version)
        .def_property_readonly("width", &Driver::width)
        .def_property_readonly("height", &Driver::height)
        .def_property_readonly("bit_depth", &Driver::bit_depth)
        .def_property_readonly("frames_in", &Driver::frames_in)
        .def_property_readonly("frames_out", &Driver::frames_out)
        .def_property_readonly("last_base_qp", &Driver::last_base);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
    m.doc() = "vcmtool native fast paths (use vcmtool.native, not this module)";
    static py::exception<FormatError> format_error(m, "FormatError", PyExc_ValueError);
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const FormatError& e) {
            PyErr_SetString(format_error.ptr(), e.what());
        } catch (const ArgError& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });

    m.def("pool_ctu", &pool_ctu, py::arg("pixmap"), py::arg("ctu"), py::arg("mode") = "min");
    m.def("rasterize_boxes", &rasterize_boxes_py, py::arg("height"), py::arg("width"), py::arg("ctu"), py::arg("boxes"),
          py::arg("qps"), py::arg("background"));
    m.def("rasterize_masks", &rasterize_masks_py, py::arg("masks"), py::arg("qps"), py::arg("ctu"),
          py::arg("background"));
    m.def("qpm_encode", &qpm_encode, py::arg("maps"), py::arg("ctu"));
    m.def("qpm_check", &qpm_check, py::arg("buf"), py::arg("frames"), py::arg("frame_size"), py::arg("max_qp"));
    m.def("kvazaar_roi", &kvazaar_roi_py, py::arg("deltas"));
    m.def("block_offsets", &block_offsets_py, py::arg("grid"), py::arg("base"), py::arg("ctu"), py::arg("block"),
          py::arg("height"), py::arg("width"));
    m.def("svtav1_roi", &svtav1_roi_py, py::arg("offsets"), py::arg("frame_numbers"));
    m.def("csv", &csv_py, py::arg("maps"));
    m.def("pack_bits", &pack_bits_py, py::arg("arr"));
    m.def("unpack_bits", &unpack_bits_py, py::arg("data"), py::arg("offset") = 0);
    m.def("split_nals", &split_nals_py, py::arg("data"), py::arg("codec"));
    m.def("access_units", &access_units_py, py::arg("data"), py::arg("codec"));
    m.def("insert_sei", &insert_sei_py, py::arg("data"), py::arg("payloads"), py::arg("codec"), py::arg("uuid"));
    m.def("extract_sei", &extract_sei_py, py::arg("data"), py::arg("codec"), py::arg("uuid"));
    m.def("escape_rbsp", &escape_py);
    m.def("unescape_rbsp", &unescape_py);

#ifdef VCMTOOL_HAVE_X265
    m.attr("X265_AVAILABLE") = true;
    m.attr("X265_VERSION") = X265Driver::version();
    m.attr("X265_BIT_DEPTHS") = X265Driver::bit_depths();
    bind_encoder<X265Driver>(m, "X265Encoder", "libx265 per-CTU QP driver (prefer vcmtool.native.X265Encoder)");
#else
    m.attr("X265_AVAILABLE") = false;
    m.attr("X265_VERSION") = py::none();
    m.attr("X265_BIT_DEPTHS") = py::list();
#endif
#ifdef VCMTOOL_HAVE_X264
    m.attr("X264_AVAILABLE") = true;
    m.attr("X264_VERSION") = X264Driver::version();
    bind_encoder<X264Driver>(m, "X264Encoder", "libx264 per-macroblock QP driver (prefer vcmtool.native.X264Encoder)");
#else
    m.attr("X264_AVAILABLE") = false;
    m.attr("X264_VERSION") = py::none();
#endif
}
