// What every MNIST example shares: its common options, its data, its sample files and its
// error handling. The command line is common/flags.hpp, the training run common/run.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <ember/ember.hpp>
#include <exception>
#include <filesystem>
#include <string>
#include <thread>

namespace ember_examples {

struct ExampleOptions {
    std::string name;                  // the program's name: default --out, messages
    std::string data;                  // IDX directory; empty: $EMBER_DATA, then the standard places
    std::string dataset = "mnist";     // mnist | fashion
    std::string out;                   // empty: out/<name>
    std::string classifier;            // empty: out/classifier_<dataset>/classifier.safetensors
    int epochs = 10;
    std::int64_t iters = 0;            // 0: epochs · batches per epoch
    ember::Index batch = 64;
    double lr = 2e-4;
    std::uint64_t seed = 0;
    int threads = 0;                   // 0: all hardware threads
    ember::Index n_samples = 1000;     // rows of samples.npy
    bool resume = false, quick = false;
    std::string command;               // the command line, as the run's summary records it
};

// Sets the thread count (0: the hardware's) and returns it.
// More threads than the hardware has only make them wait for each other (several times
// slower): such a request is capped, and said so.
inline int use_threads(ExampleOptions& o) {
    const int hardware = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    if (o.threads == 0) o.threads = hardware;
    if (o.threads > hardware) {
        std::fprintf(stderr, "%s: --threads %d is more than this machine's %d hardware threads; using %d\n",
                     o.name.c_str(), o.threads, hardware, hardware);
        o.threads = hardware;
    }
    ember::set_num_threads(o.threads);
    return o.threads;
}

inline ember::Dataset dataset_of(const ExampleOptions& o) {
    return o.dataset == "fashion" ? ember::Dataset::fashion_mnist : ember::Dataset::mnist;
}

// The training (train = true) or test images, [N,1,28,28] floats with the raw pixel values
// 0..255 (ember::scale_to_unit / scale_to_symmetric rescale them), with labels.
inline ember::ImageSet load_images(const ExampleOptions& o, bool train) {
    return ember::load_image_set(ember::find_dataset(dataset_of(o), o.data), train);
}

// Standard normal noise [n, dim] from a generator of its own seeded with `seed`: the same z
// on every call (the z of the pictures drawn every epoch, and of the final samples).
inline ember::Tensor<float> fixed_noise(ember::Index n, ember::Index dim, std::uint64_t seed) {
    ember::Generator g(seed);
    return ember::normal<float>(ember::Shape{n, dim}, g);
}

// samples.png (a 10x10 grid of the first 100 images, fewer if there are fewer; three channels
// as RGB) and samples.npy (all of them, float32 [N,C,28,28] in [0,1], C = 1 or 3). Both are
// written atomically.
inline void write_samples(const std::filesystem::path& out, const ember::Tensor<float>& images01,
                          const std::string& png = "samples.png", const std::string& npy = "samples.npy") {
    EMBER_CHECK(images01.rank() == 4 && (images01.dim(1) == 1 || images01.dim(1) == 3) && images01.dim(2) == 28 &&
                    images01.dim(3) == 28,
                "write_samples", "expected images [N,1,28,28] or [N,3,28,28], got ", images01.shape());
    const ember::Index n = std::min<ember::Index>(images01.dim(0), 100);
    const ember::Index cols = std::min<ember::Index>(n, 10);
    ember::save_image_grid(out / png, images01.slice(0, 0, n).contiguous(), cols, 0.0, 1.0);
    ember::save_npy(out / npy, images01);
}

// The lr at step `step` (0-based) of a run of `total` steps when it falls linearly from `lr`
// toward 0 (lr/total at the last step; the WGAN-GP paper's schedule). A function of the step
// alone, so that --resume continues the schedule exactly.
inline double linearly_decayed_lr(double lr, std::int64_t step, std::int64_t total) {
    return lr * (1.0 - static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(total, 1)));
}

// Runs an example's body: an exception becomes "name: message" on stderr and exit code 1.
template <class Body>
int run_main(const std::string& name, Body&& body) {
    try {
        return body();
    } catch (const std::exception& e) {
        std::fflush(stdout);
        const std::string message = e.what(), named = name + ": ";
        std::fprintf(stderr, "%s%s\n", message.starts_with(named) ? "" : named.c_str(), message.c_str());
        return 1;
    }
}

}  // namespace ember_examples
