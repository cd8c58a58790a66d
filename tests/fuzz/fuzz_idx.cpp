// libFuzzer target for the IDX parser (include/ember/data/idx.hpp): any byte string must
// either parse into an array whose payload matches its dimensions or throw ember::Error.
#include <ember/data/idx.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        const ember::IdxArray a = ember::parse_idx(std::span<const std::uint8_t>(data, size));
        if (a.data.size() != static_cast<std::size_t>(a.numel()) * a.element_size()) __builtin_trap();
        if (a.numel() <= 4096) (void)a.to_tensor<double>();
    } catch (const ember::Error&) {
    }
    return 0;
}
