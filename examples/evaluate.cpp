// evaluate: the sample-quality numbers for any file of generated digits, judged
// by the classifier that classifier_mnist trains (the same numbers, from the same code in
// common/quality.hpp, as the examples print at their end):
//
//   class histogram   h_k = share of samples with argmax_k softmax(f(x)) = k
//   KL to uniform     Σ_k h_k log(10 h_k)              (0: all digits equally often)
//   confidence        mean_x max_k softmax(f(x))_k     (how clearly a digit each sample is)
//   Fréchet distance  d² = |μ_s - μ_t|² + tr(Σ_s + Σ_t - 2 (Σ_s^{1/2} Σ_t Σ_s^{1/2})^{1/2})
//                     between Gaussian fits of the classifier's 128 penultimate features of
//                     the samples and of the test set (FID's formula on this classifier)
//
//   evaluate SAMPLES.npy [--classifier PATH] [--dataset mnist|fashion] [--data DIR] [--threads N]
//   evaluate --reference-test [--n N] ...     the first N test images themselves (default 1000):
//                                             the numbers real digits get (FD near 0, KL near 0)
//
// SAMPLES.npy: float32, shape [N,1,28,28] or [N,784], values in [0,1] (what every example
// writes as samples.npy).

#include <array>
#include <cstdio>
#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>
#include <optional>

#include "common/example.hpp"
#include "common/flags.hpp"
#include "common/quality.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;

namespace {

// The dtype stored in an .npy file (load_npy converts every dtype to the one asked for, so
// the header is read again to insist on float32).
ember::DType npy_dtype(const fs::path& path) {
    const ember::io_detail::Where where{"load_npy", path.string()};
    std::ifstream in(path, std::ios::binary);
    std::array<unsigned char, 12> pre{};
    in.read(reinterpret_cast<char*>(pre.data()), pre.size());
    if (!in) where.fail("cannot read the NPY header");
    // Version 1.0 keeps the header length in 2 bytes (offset 8), 2.0 and 3.0 in 4.
    const bool v1 = pre[6] == 1;
    const std::size_t prefix = v1 ? 10 : 12;
    const std::size_t len = v1 ? pre[8] | (pre[9] << 8)
                               : pre[8] | (pre[9] << 8) | (pre[10] << 16) | (static_cast<std::size_t>(pre[11]) << 24);
    std::string header(len, '\0');
    in.seekg(static_cast<std::streamoff>(prefix));
    in.read(header.data(), static_cast<std::streamsize>(len));
    if (!in) where.fail("cannot read the NPY header");
    return ember::io_detail::NpyHeaderParser(header, where).parse().dtype;
}

// The samples of SAMPLES.npy as [N,1,28,28] in [0,1], or a clear error.
Tensor<float> load_samples(const fs::path& path) {
    EMBER_CHECK(fs::exists(path), path.string().c_str(), "no such file");
    const Tensor<float> x = ember::load_npy<float>(path);  // checks the format and the length
    const ember::DType d = npy_dtype(path);
    EMBER_CHECK(d == ember::DType::F32, path.string().c_str(), "expected float32 values, found ",
                ember::dtype_name(d), " (write the samples as float32 in [0,1])");
    return ember_examples::as_unit_images(x, path.string());
}

void print(const std::string& what, const ember_examples::SampleQuality& q, Index n, Index n_test) {
    std::printf("%s: %lld images vs %lld test images\n", what.c_str(), static_cast<long long>(n),
                static_cast<long long>(n_test));
    std::printf("  class histogram:");
    for (std::size_t k = 0; k < q.histogram.size(); ++k) std::printf("  %zu: %.3f", k, q.histogram[k]);
    std::printf("\n  KL to uniform     %.4f   (0: every class equally often; log 10 = 2.303: one class)\n",
                q.kl_uniform);
    std::printf("  mean confidence   %.4f   (mean largest softmax probability)\n", q.confidence);
    std::printf("  Frechet distance  %.4f   (classifier features, vs the test set)\n", q.frechet);
    std::printf("%s: %s\n", what.c_str(), ember_examples::format_quality(q).c_str());
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "evaluate";
    std::string samples;
    bool reference = false;
    Index n_reference = 1000;
    ember_examples::Flags flags("evaluate: class histogram, KL to uniform, confidence and Frechet distance of generated digits");
    flags.positional("samples", samples, "samples.npy: float32 [N,1,28,28] or [N,784] in [0,1]");
    flags.add("--classifier", o.classifier,
              "classifier checkpoint from classifier_mnist (default: out/classifier_<dataset>/classifier.safetensors)");
    flags.choice("--dataset", o.dataset, {"mnist", "fashion"}, "mnist or fashion");
    flags.add("--data", o.data, "directory with the IDX files (default: $EMBER_DATA, then the standard places)");
    flags.add("--threads", o.threads, "threads (default: all)", ember_examples::Check::positive);
    flags.flag("--reference-test", reference, "also evaluate the first N test images themselves (a sanity check)");
    flags.add("--n", n_reference, "images for --reference-test (default: as many as SAMPLES has, else 1000)",
              ember_examples::Check::range(2, 10000));
    if (const std::optional<int> exit = flags.parse(argc, argv)) return *exit;
    if (samples.empty() && !reference) {
        std::fprintf(stderr, "evaluate: give SAMPLES.npy or --reference-test (--help lists the flags)\n");
        return 2;
    }
    if (o.classifier.empty()) o.classifier = "out/classifier_" + o.dataset + "/classifier.safetensors";

    return ember_examples::run_main(o.name, [&] {
        ember_examples::use_threads(o);
        const Tensor<float> x = samples.empty() ? Tensor<float>() : load_samples(samples);
        EMBER_CHECK(fs::exists(o.classifier), "--classifier", "no classifier at ", o.classifier,
                    " (train one with `classifier_mnist --dataset ", o.dataset, "`, or pass --classifier PATH)");
        ember::Generator init(0);
        ember_examples::MnistClassifier net(init);
        ember_examples::load_classifier(net, o.classifier);
        const Tensor<float> test01 = ember_examples::test_images01(o);
        const ember::GaussianFit test = ember_examples::test_feature_gaussian(net, test01);
        std::printf("evaluate: classifier %s, %s test set (%lld images)\n", o.classifier.c_str(), o.dataset.c_str(),
                    static_cast<long long>(test.n));
        if (x.defined()) print(samples, ember_examples::sample_quality(net, x, test), x.dim(0), test.n);
        if (reference) {
            if (!flags.given("--n") && x.defined()) n_reference = std::min<Index>(x.dim(0), test01.dim(0));
            const Tensor<float> real = test01.slice(0, 0, n_reference).contiguous();
            print("reference: the first " + std::to_string(n_reference) + " test images",
                  ember_examples::sample_quality(net, real, test), n_reference, test.n);
        }
        return 0;
    });
}
