// libFuzzer target for the IDX reader (include/ember/data/idx.hpp): any byte string must
// either parse into an array whose payload matches its dimensions or throw ember::Error,
// both from memory (parse_idx) and as a file (read_idx, which also reads gzip: a gzip
// input exercises the decompression, the size checks against the compressed file, and
// the stream's CRC). An uncompressed input gives the same array both ways.
#include <ember/data/idx.hpp>

#include <cstdlib>
#include <optional>
#include <utility>

#include "fuzz_file.hpp"

namespace {

void check(const ember::IdxArray& a) {
    if (a.data.size() != static_cast<std::size_t>(a.numel()) * a.element_size()) std::abort();
    if (a.numel() <= 4096) (void)a.to_tensor<double>();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::optional<ember::IdxArray> parsed;  // set only if parsing and the checks passed
    try {
        ember::IdxArray a = ember::parse_idx(std::span<const std::uint8_t>(data, size));
        check(a);
        parsed = std::move(a);
    } catch (const ember::Error&) {
    }
    const bool gzip = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    try {
        const ember::IdxArray a = ember::read_idx(fuzz::as_file(data, size).string());
        check(a);
        if (!gzip && (!parsed || a.dims != parsed->dims || a.type != parsed->type || a.data != parsed->data))
            std::abort();
    } catch (const ember::Error&) {
        if (!gzip && parsed) std::abort();
    }
    return 0;
}
