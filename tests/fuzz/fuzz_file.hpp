// The fuzzed bytes as a file, for the readers' file entry points (load_npy, load_safetensors,
// read_idx), which read through a different path from the in-memory parsers: pread of
// pieces, file sizes, gzip. One file per fuzzing process, rewritten for every input.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fuzz {

inline const std::filesystem::path& input_file() {
    static const std::filesystem::path path =
        std::filesystem::temp_directory_path() / ("ember_fuzz_input_" + std::to_string(::getpid()));
    return path;
}

// Writes `size` bytes at `data` to input_file() and returns its path.
inline const std::filesystem::path& as_file(const std::uint8_t* data, std::size_t size) {
    std::ofstream out(input_file(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    if (!out) std::abort();  // the harness itself failed, not ember
    return input_file();
}

}  // namespace fuzz
