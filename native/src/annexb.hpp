// Annex-B byte streams (H.264/AVC, H.265/HEVC, H.266/VVC): NAL splitting, access units,
// SEI user_data_unregistered insertion and extraction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vcm {

enum class Codec { AVC = 0, HEVC = 1, VVC = 2 };

struct Nal {
    int64_t offset;  // first byte of the NAL unit header (after the start code)
    int64_t size;    // bytes up to the next start code, trailing zero bytes excluded
    int type;
};

struct AccessUnit {
    int64_t first_nal;   // first NAL unit of the AU (AUD, parameter sets, prefix SEI, ...)
    int64_t insert_nal;  // where a prefix SEI goes: before the picture header / first VCL NAL
    int64_t end_nal;     // one past the last NAL unit of the AU
};

// Throws FormatError for anything that is not a well-formed Annex-B stream of `codec`.
std::vector<Nal> split_nals(const uint8_t* data, int64_t n, Codec codec);
std::vector<AccessUnit> access_units(const uint8_t* data, const std::vector<Nal>& nals, Codec codec);

struct Span {
    const uint8_t* data;
    int64_t size;  // < 0: no payload for this access unit
};

// One payload per access unit (size < 0 skips it). The SEI message is user_data_unregistered
// (payloadType 5) carrying uuid (16 bytes) + payload, emulation-prevented, in a prefix SEI NAL
// unit placed before the first VCL NAL unit (or VVC picture header) of the access unit.
// Returns the output size; `out` must hold insert_sei_size() bytes.
struct SeiPlan {
    std::vector<Nal> nals;
    std::vector<AccessUnit> aus;
    std::vector<std::pair<int64_t, std::string>> inserts;  // byte position, NAL unit with start code
    int64_t out_size = 0;
};
SeiPlan plan_sei(const uint8_t* data, int64_t n, Codec codec, const std::vector<Span>& payloads,
                 const uint8_t uuid[16]);
void write_sei(const uint8_t* data, int64_t n, const SeiPlan& plan, uint8_t* out);

// Payloads (after the uuid) of all user_data_unregistered messages with this uuid, in stream
// order, each with the index of its access unit.
std::vector<std::pair<int64_t, std::string>> extract_sei(const uint8_t* data, int64_t n, Codec codec,
                                                         const uint8_t uuid[16]);

// Emulation prevention (RBSP -> NAL payload) and its inverse.
void escape_rbsp(const uint8_t* src, int64_t n, std::string& out);
void unescape_rbsp(const uint8_t* src, int64_t n, std::string& out);

}  // namespace vcm
