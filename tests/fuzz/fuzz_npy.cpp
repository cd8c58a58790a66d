// libFuzzer target for ember's NPY reader (build instructions: CMakeLists.txt here).
//
// Any input must either parse or throw ember::Error: a crash, a sanitizer report, another
// exception type or a hang is a bug. What parses must also be consistent: reading into
// float and into double agree, reading the bytes from a file (load_npy) gives what the
// in-memory parser gives, and writing the tensor back and reading it again gives the same
// values.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include <ember/io/npy.hpp>

#include "fuzz_file.hpp"

namespace {

template <class A, class B>
bool same_value(A a, B b) {
    return std::isnan(a) ? std::isnan(b) : a == static_cast<A>(b);
}

template <class T>
void check_round_trip(const ember::Tensor<T>& t) {
    const std::vector<std::byte> bytes = ember::npy_to_bytes(t);
    const ember::Tensor<T> back = ember::npy_from_bytes<T>(bytes);  // must not throw
    if (!(back.shape() == t.shape()) ||
        std::memcmp(back.data(), t.data(), sizeof(T) * static_cast<std::size_t>(t.numel())) != 0)
        std::abort();
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
    ember::Tensor<float> f;
    bool parsed = true;
    try {
        f = ember::npy_from_bytes<float>(bytes);
    } catch (const ember::Error&) {
        parsed = false;
    }
    // The file reader agrees with the in-memory one: it fails exactly when that fails, and
    // otherwise reads the same values.
    ember::Tensor<float> from_file;
    try {
        from_file = ember::load_npy<float>(fuzz::as_file(data, size));
    } catch (const ember::Error&) {
        if (parsed) std::abort();
        return 0;
    }
    if (!parsed || !(from_file.shape() == f.shape())) std::abort();
    for (ember::Index i = 0; i < f.numel(); ++i)
        if (!same_value(f.data()[i], from_file.data()[i])) std::abort();
    // It parsed as float, so it must parse as double, to the same values.
    const ember::Tensor<double> d = ember::npy_from_bytes<double>(bytes);
    if (!(d.shape() == f.shape())) std::abort();
    for (ember::Index i = 0; i < f.numel(); ++i)
        if (!same_value(f.data()[i], d.data()[i])) std::abort();
    check_round_trip(f);
    check_round_trip(d);
    return 0;
}
