#include "annexb.hpp"

#include <algorithm>
#include <cstring>

#include "common.hpp"

namespace vcm {
namespace {

const char* codec_name(Codec c) {
    switch (c) {
        case Codec::AVC: return "H.264";
        case Codec::HEVC: return "HEVC";
        case Codec::VVC: return "VVC";
    }
    return "?";
}

int header_size(Codec c) { return c == Codec::AVC ? 1 : 2; }

int nal_type(const uint8_t* p, Codec c) {
    switch (c) {
        case Codec::AVC: return p[0] & 0x1f;
        case Codec::HEVC: return (p[0] >> 1) & 0x3f;
        case Codec::VVC: return (p[1] >> 3) & 0x1f;
    }
    return -1;
}

bool is_vcl(int t, Codec c) {
    switch (c) {
        case Codec::AVC: return t >= 1 && t <= 5;
        case Codec::HEVC: return t <= 31;
        case Codec::VVC: return t <= 11;
    }
    return false;
}

// Non-VCL NAL units that, seen after the last VCL NAL unit of a picture, open the next AU.
bool opens_au(int t, Codec c) {
    switch (c) {
        case Codec::AVC: return t == 6 || t == 7 || t == 8 || t == 9 || (t >= 13 && t <= 18);
        case Codec::HEVC:
            return (t >= 32 && t <= 35) || t == 39 || (t >= 41 && t <= 44) || (t >= 48 && t <= 55);
        case Codec::VVC:
            return (t >= 12 && t <= 17) || t == 20 || t == 23 || t == 26 || t == 28 || t == 29;
    }
    return false;
}

int prefix_sei_type(Codec c) {
    switch (c) {
        case Codec::AVC: return 6;
        case Codec::HEVC: return 39;
        case Codec::VVC: return 23;
    }
    return -1;
}

std::string at(int64_t pos) { return " at byte " + std::to_string(pos); }

}  // namespace

std::vector<Nal> split_nals(const uint8_t* d, int64_t n, Codec codec) {
    std::vector<Nal> nals;
    if (n <= 0) return nals;
    // Start codes 00 00 01: find each 01 with memchr (vectorized in libc), check the two bytes
    // before it.
    std::vector<int64_t> sc;
    sc.reserve(size_t(n / 2048 + 16));
    int64_t i = 2;
    while (i < n) {
        const void* q = std::memchr(d + i, 1, size_t(n - i));
        if (!q) break;
        const int64_t j = static_cast<const uint8_t*>(q) - d;
        if (d[j - 1] == 0 && d[j - 2] == 0) {
            sc.push_back(j - 2);
            i = j + 3;
        } else {
            i = j + 1;
        }
    }
    if (sc.empty())
        throw FormatError(std::string("not an Annex-B ") + codec_name(codec) +
                          " stream: no start code (00 00 01) in " + std::to_string(n) + " bytes");
    for (int64_t k = 0; k < sc.front(); ++k)
        if (d[k] != 0)
            throw FormatError(std::string("not an Annex-B ") + codec_name(codec) + " stream: " +
                              std::to_string(sc.front()) + " bytes of other data before the first start code");
    nals.reserve(sc.size());
    const int hs = header_size(codec);
    for (size_t k = 0; k < sc.size(); ++k) {
        const int64_t off = sc[k] + 3;
        int64_t end = k + 1 < sc.size() ? sc[k + 1] : n;
        while (end > off && d[end - 1] == 0) --end;
        const int64_t size = end - off;
        if (size == 0) {
            // Only a run of zeros follows this start code: trailing padding at the very end is
            // harmless, an empty NAL unit between two start codes is not.
            if (k + 1 == sc.size()) break;
            throw FormatError("empty NAL unit" + at(off));
        }
        if (size < hs) throw FormatError("truncated NAL unit header" + at(off));
        if (d[off] & 0x80) throw FormatError("NAL unit" + at(off) + " has forbidden_zero_bit set");
        if (codec != Codec::AVC && (d[off + 1] & 7) == 0)
            throw FormatError("NAL unit" + at(off) + " has nuh_temporal_id_plus1 = 0");
        nals.push_back(Nal{off, size, nal_type(d + off, codec)});
    }
    return nals;
}

std::vector<AccessUnit> access_units(const uint8_t* d, const std::vector<Nal>& nals, Codec codec) {
    std::vector<AccessUnit> aus;
    int64_t pending = -1;      // first AU-opening non-VCL NAL unit since the last VCL
    bool open = false;         // an AU with a picture is in progress
    bool ph_waiting = false;   // VVC: a picture header was seen, its first VCL not yet
    const int64_t count = int64_t(nals.size());
    for (int64_t i = 0; i < count; ++i) {
        const Nal& nal = nals[size_t(i)];
        const int t = nal.type;
        const uint8_t* p = d + nal.offset;
        if (codec == Codec::VVC && t == 19) {  // PH_NUT: always starts a picture unit
            const int64_t start = pending >= 0 ? pending : i;
            if (!aus.empty()) aus.back().end_nal = start;
            aus.push_back(AccessUnit{start, i, count});
            pending = -1;
            open = true;
            ph_waiting = true;
            continue;
        }
        if (is_vcl(t, codec)) {
            bool first;
            if (codec == Codec::VVC && ph_waiting) {
                first = false;  // the slice of the picture header just seen
            } else {
                const int hs = header_size(codec);
                if (nal.size < hs + 1) throw FormatError("truncated slice NAL unit" + at(nal.offset));
                // AVC: first_mb_in_slice == 0 (ue(v) '1'); HEVC: first_slice_segment_in_pic_flag;
                // VVC: picture_header_in_slice_header_flag (then the picture has one slice).
                first = (p[hs] & 0x80) != 0;
            }
            ph_waiting = false;
            if (first || !open) {
                int64_t ins = i;
                if (codec == Codec::AVC)  // keep SVC/MVC prefix NAL units (14) next to their slice
                    while (ins > 0 && nals[size_t(ins - 1)].type == 14) --ins;
                const int64_t start = pending >= 0 ? std::min(pending, ins) : ins;
                if (!aus.empty()) aus.back().end_nal = start;
                aus.push_back(AccessUnit{start, ins, count});
                open = true;
            }
            pending = -1;
            continue;
        }
        if (opens_au(t, codec) && pending < 0 && !ph_waiting) pending = i;
    }
    return aus;
}

void escape_rbsp(const uint8_t* src, int64_t n, std::string& out) {
    out.reserve(out.size() + size_t(n + n / 64 + 8));
    int zeros = 0;
    int64_t last = 0;  // copy runs between insertions in one go
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t b = src[i];
        if (zeros >= 2 && b <= 3) {
            out.append(reinterpret_cast<const char*>(src + last), size_t(i - last));
            out.push_back('\x03');
            last = i;
            zeros = 0;
        }
        zeros = b ? 0 : zeros + 1;
    }
    out.append(reinterpret_cast<const char*>(src + last), size_t(n - last));
}

void unescape_rbsp(const uint8_t* src, int64_t n, std::string& out) {
    out.reserve(out.size() + size_t(n));
    int zeros = 0;
    int64_t last = 0;
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t b = src[i];
        if (zeros >= 2 && b == 3) {
            out.append(reinterpret_cast<const char*>(src + last), size_t(i - last));
            last = i + 1;
            zeros = 0;
            continue;
        }
        zeros = b ? 0 : zeros + 1;
    }
    out.append(reinterpret_cast<const char*>(src + last), size_t(n - last));
}

namespace {

void put_sei_number(std::string& s, uint64_t v) {
    while (v >= 255) {
        s.push_back('\xff');
        v -= 255;
    }
    s.push_back(char(v));
}

std::string make_sei_nal(const uint8_t* hdr_src, Codec codec, const Span& payload, const uint8_t uuid[16]) {
    std::string rbsp;
    rbsp.reserve(size_t(payload.size + 32));
    put_sei_number(rbsp, 5);  // user_data_unregistered
    put_sei_number(rbsp, uint64_t(16 + payload.size));
    rbsp.append(reinterpret_cast<const char*>(uuid), 16);
    if (payload.size) rbsp.append(reinterpret_cast<const char*>(payload.data), size_t(payload.size));
    rbsp.push_back('\x80');  // rbsp_trailing_bits
    std::string nal("\0\0\0\1", 4);
    switch (codec) {
        case Codec::AVC: nal.push_back('\x06'); break;  // nal_ref_idc 0, type 6
        case Codec::HEVC:
            // PREFIX_SEI (39), layer id and TemporalId of the access unit's first slice.
            nal.push_back(char((39 << 1) | (hdr_src[0] & 1)));
            nal.push_back(char(hdr_src[1]));
            break;
        case Codec::VVC:
            nal.push_back(char(hdr_src[0] & 0x3f));  // layer id
            nal.push_back(char((23 << 3) | (hdr_src[1] & 7)));
            break;
    }
    escape_rbsp(reinterpret_cast<const uint8_t*>(rbsp.data()), int64_t(rbsp.size()), nal);
    return nal;
}

}  // namespace

SeiPlan plan_sei(const uint8_t* d, int64_t n, Codec codec, const std::vector<Span>& payloads,
                 const uint8_t uuid[16]) {
    SeiPlan plan;
    plan.nals = split_nals(d, n, codec);
    plan.aus = access_units(d, plan.nals, codec);
    if (plan.aus.size() != payloads.size())
        throw FormatError("the stream has " + std::to_string(plan.aus.size()) + " access units but " +
                          std::to_string(payloads.size()) + " SEI payloads were given");
    plan.out_size = n;
    for (size_t a = 0; a < plan.aus.size(); ++a) {
        if (payloads[a].size < 0) continue;
        const int64_t k = plan.aus[a].insert_nal;
        const Nal& at_nal = plan.nals[size_t(k)];
        const int64_t pos = k == 0 ? 0 : plan.nals[size_t(k - 1)].offset + plan.nals[size_t(k - 1)].size;
        plan.inserts.emplace_back(pos, make_sei_nal(d + at_nal.offset, codec, payloads[a], uuid));
        plan.out_size += int64_t(plan.inserts.back().second.size());
    }
    return plan;
}

void write_sei(const uint8_t* d, int64_t n, const SeiPlan& plan, uint8_t* out) {
    int64_t src = 0;
    uint8_t* o = out;
    for (const auto& ins : plan.inserts) {
        std::memcpy(o, d + src, size_t(ins.first - src));
        o += ins.first - src;
        std::memcpy(o, ins.second.data(), ins.second.size());
        o += ins.second.size();
        src = ins.first;
    }
    std::memcpy(o, d + src, size_t(n - src));
}

std::vector<std::pair<int64_t, std::string>> extract_sei(const uint8_t* d, int64_t n, Codec codec,
                                                         const uint8_t uuid[16]) {
    std::vector<std::pair<int64_t, std::string>> found;
    const std::vector<Nal> nals = split_nals(d, n, codec);
    const std::vector<AccessUnit> aus = access_units(d, nals, codec);
    const int sei_type = prefix_sei_type(codec);
    const int hs = header_size(codec);
    size_t au = 0;
    std::string rbsp;
    for (size_t k = 0; k < nals.size(); ++k) {
        while (au + 1 < aus.size() && int64_t(k) >= aus[au + 1].first_nal) ++au;
        const Nal& nal = nals[k];
        if (nal.type != sei_type) continue;
        rbsp.clear();
        unescape_rbsp(d + nal.offset + hs, nal.size - hs, rbsp);
        const uint8_t* r = reinterpret_cast<const uint8_t*>(rbsp.data());
        const int64_t len = int64_t(rbsp.size());
        int64_t pos = 0;
        while (pos < len) {
            if (len - pos == 1 && r[pos] == 0x80) break;  // rbsp_trailing_bits
            uint64_t v[2] = {0, 0};
            for (int f = 0; f < 2; ++f) {
                while (pos < len && r[pos] == 0xff) {
                    v[f] += 255;
                    ++pos;
                }
                if (pos >= len) throw FormatError("truncated SEI message in the SEI NAL unit" + at(nal.offset));
                v[f] += r[pos++];
            }
            const uint64_t ptype = v[0], psize = v[1];
            if (psize > uint64_t(len - pos))
                throw FormatError("SEI message in the NAL unit" + at(nal.offset) + " claims " +
                                  std::to_string(psize) + " bytes but only " + std::to_string(len - pos) +
                                  " remain");
            if (ptype == 5 && psize >= 16 && std::memcmp(r + pos, uuid, 16) == 0) {
                const int64_t a = aus.empty() || int64_t(k) < aus[0].first_nal ? -1 : int64_t(au);
                found.emplace_back(a, std::string(reinterpret_cast<const char*>(r + pos + 16), size_t(psize - 16)));
            }
            pos += int64_t(psize);
        }
    }
    return found;
}

}  // namespace vcm
