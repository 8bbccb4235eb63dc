#include <cmath>
#include <cstring>

#include "common.hpp"
#include "encoders.hpp"
#include "serialize.hpp"

namespace vcm {

int prepare_offsets(const FrameQp& qp, int width, int height, int qp_max, int64_t block,
                    std::vector<float>& offsets) {
    if (!qp.grid) {
        offsets.clear();
        if (qp.has_base && (qp.base < 0 || qp.base > qp_max))
            throw ArgError("base QP " + std::to_string(qp.base) + " outside 0.." + std::to_string(qp_max));
        return qp.has_base ? qp.base : -1;
    }
    if (qp.ctu < 1) throw ArgError("ctu must be >= 1");
    const int64_t gh = ceil_div(height, qp.ctu), gw = ceil_div(width, qp.ctu);
    if (qp.gh != gh || qp.gw != gw)
        throw ArgError("QP grid is " + std::to_string(qp.gh) + "x" + std::to_string(qp.gw) + " (rows x cols) but a " +
                       std::to_string(width) + "x" + std::to_string(height) + " picture with ctu " +
                       std::to_string(qp.ctu) + " needs " + std::to_string(gh) + "x" + std::to_string(gw));
    int64_t sum = 0;
    for (int64_t i = 0; i < gh * gw; ++i) {
        const int32_t v = qp.grid[i];
        if (v < 0 || v > qp_max)
            throw ArgError("QP " + std::to_string(v) + " in the grid is outside 0.." + std::to_string(qp_max));
        sum += v;
    }
    int base = qp.has_base ? qp.base : int(std::nearbyint(double(sum) / double(gh * gw)));
    if (base < 0 || base > qp_max)
        throw ArgError("base QP " + std::to_string(base) + " outside 0.." + std::to_string(qp_max));
    const int64_t bh = ceil_div(height, block), bw = ceil_div(width, block);
    offsets.resize(size_t(bh * bw));
    const double b = base;
    block_offsets(qp.grid, 1, gh, gw, qp.ctu, &b, block, height, width, offsets.data());
    return base;
}

const char* reserved_option(const std::string& key, const char* const* reserved) {
    for (const char* const* r = reserved; *r; ++r)
        if (key == *r) return *r;
    return nullptr;
}

}  // namespace vcm
