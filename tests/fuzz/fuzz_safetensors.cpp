// libFuzzer target for ember's safetensors loader (build instructions: CMakeLists.txt here).
//
// Any input must either load or throw ember::Error: a crash, a sanitizer report, another
// exception type or a hang is a bug. What loads must also be consistent: loading into
// float and into double agree, loading the bytes from a file (load_safetensors) gives what
// the in-memory loader gives, and saving the tensors and metadata and loading them again
// gives the same values (now with ember's checksums, which must verify).
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include <ember/io/safetensors.hpp>

#include "fuzz_file.hpp"

namespace {

template <class A, class B>
bool same_value(A a, B b) {
    return std::isnan(a) ? std::isnan(b) : a == static_cast<A>(b);
}

template <class T>
void check_round_trip(const ember::Safetensors<T>& s) {
    const std::vector<std::pair<std::string, ember::Tensor<T>>> named(s.tensors.begin(), s.tensors.end());
    const std::vector<std::byte> bytes = ember::safetensors_to_bytes(named, s.metadata);
    const ember::Safetensors<T> back = ember::safetensors_from_bytes<T>(bytes);  // must not throw
    if (!back.checksummed || back.metadata != s.metadata || back.tensors.size() != s.tensors.size()) std::abort();
    for (const auto& [name, t] : s.tensors) {
        const ember::Tensor<T>& u = back.at(name);
        if (!(u.shape() == t.shape()) ||
            std::memcmp(u.data(), t.data(), sizeof(T) * static_cast<std::size_t>(t.numel())) != 0)
            std::abort();
    }
}

}  // namespace

// ember's buffer pool would keep freed tensor buffers for reuse, hiding use-after-free
// from AddressSanitizer and growing the fuzzer's memory; turn it off.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    ember::set_pool_limit(0);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
    ember::Safetensors<float> f;
    bool loaded = true;
    try {
        f = ember::safetensors_from_bytes<float>(bytes);
    } catch (const ember::Error&) {
        loaded = false;
    }
    // The file reader agrees with the in-memory one: it fails exactly when that fails, and
    // otherwise reads the same tensors and metadata.
    ember::Safetensors<float> from_file;
    try {
        from_file = ember::load_safetensors<float>(fuzz::as_file(data, size));
    } catch (const ember::Error&) {
        if (loaded) std::abort();
        return 0;
    }
    if (!loaded || from_file.metadata != f.metadata || from_file.checksummed != f.checksummed ||
        from_file.tensors.size() != f.tensors.size())
        std::abort();
    for (const auto& [name, t] : f.tensors) {
        const ember::Tensor<float>& u = from_file.at(name);
        if (!(u.shape() == t.shape())) std::abort();
        for (ember::Index i = 0; i < t.numel(); ++i)
            if (!same_value(t.data()[i], u.data()[i])) std::abort();
    }
    const ember::Safetensors<double> d = ember::safetensors_from_bytes<double>(bytes);
    if (d.metadata != f.metadata || d.tensors.size() != f.tensors.size()) std::abort();
    for (const auto& [name, t] : f.tensors) {
        const ember::Tensor<double>& u = d.at(name);
        if (!(u.shape() == t.shape())) std::abort();
        for (ember::Index i = 0; i < t.numel(); ++i)
            if (!same_value(t.data()[i], u.data()[i])) std::abort();
    }
    check_round_trip(f);
    check_round_trip(d);
    return 0;
}
