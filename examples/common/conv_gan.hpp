#pragma once
// The small DCGAN-style generator and critic (Radford, Metz & Chintala 2016) shared by
// examples/wgan_gp_mnist.cpp (G and the critic D), examples/meg_mnist.cpp (G and the
// energy U, with the statistics network T below) and examples/stacked_mnist.cpp (all of
// these, on 3 channels), for 28x28 images of C channels in [-1, 1]. With width w, and D's
// width v = round(w · d_scale):
//
//   G: z (latent) -> Linear 2w·7·7 -> BN, ReLU -> ConvT 4x4/2 2w->w (14x14) -> BN, ReLU
//                                             -> ConvT 4x4/2 w->C (28x28) -> Tanh
//      (ConvGanOptions::upsample_conv: nearest upsampling by 2 + Conv 3x3 for each ConvT)
//   D: x [N,C,28,28] -> Conv 4x4/2 C->v (14x14) -> LReLU(0.2) -> Conv 4x4/2 v->2v (7x7)
//                    -> LReLU(0.2) -> Linear 2v·7·7 -> 1
//
// D has no normalisation layer: the gradient penalties of WGAN-GP and MEG need per-sample
// input gradients, which batch statistics would couple (energy/penalty.hpp). G uses
// BatchNorm in training and its running statistics for samples (sample01), so that a
// sample does not depend on the others of its batch. PyTorch's default initialisation;
// G is initialised before D, both from `init`.
//
// Multiply-adds per image, forward, for C = 1 and v = w: G 98·w·latent + 1568·w² + 3136·w
// (1.9 M at w = 32 and latent 64, 7.4 M at w = 64 and latent 128); D 1568·w² + 3234·w (1.7 M at
// w = 32, 6.6 M at w = 64). Each further channel adds 3136·w to G and 3136·v to D.
//
// Meg holds the networks of the maximum-entropy generator (Kumar et al. 2019): G, the energy
// U (the critic D above) and the statistics network T(x, z) of the mutual information between
// G(z) and z (docs/math.md §2.4), [x, z] (784·C + latent) -> Linear 512 -> LReLU(0.2) -> Linear 1;
// and their Adam optimisers (betas 0.5 / 0.9, the paper code's).
#include <algorithm>
#include <cmath>
#include <ember/ember.hpp>

namespace ember_examples {

struct ConvGanOptions {
    ember::Index latent = 64;
    ember::Index width = 32;
    // G's upsampling layers: ConvTranspose 4x4/2 (DCGAN), or nearest upsampling by 2 then a
    // 3x3 convolution (nn::UpsampleConv2d), which avoids the transposed convolution's
    // checkerboard pattern (Odena, Dumoulin & Olah 2016) at about the same cost.
    bool upsample_conv = false;
    ember::Index channels = 1;  // C: of G's output and D's input
    double d_scale = 1;         // D's width is round(width · d_scale): a weaker D (PacGAN's Table 3)
};

struct ConvGan {
    using Var = ember::Var<float>;
    using Tensor = ember::Tensor<float>;

    ConvGan(ember::Generator& init, ConvGanOptions o = {}) : latent(o.latent), channels(o.channels) {
        namespace nn = ember::nn;
        const ember::Index w = o.width;
        const auto v = static_cast<ember::Index>(std::lround(static_cast<double>(w) * o.d_scale));
        EMBER_CHECK(v >= 1, "ConvGan", "D's width round(", w, " * ", o.d_scale, ") must be at least 1");
        const nn::ConvTranspose2dOptions up{.stride = 2, .padding = 1};
        G.add<nn::Linear>(o.latent, 2 * w * 7 * 7, init);
        G.add<nn::Reshape>(std::vector<ember::Index>{2 * w, 7, 7});
        G.add<nn::BatchNorm2d>(2 * w);
        G.add<nn::ReLU>();
        auto add_upsampling = [&](ember::Index in, ember::Index out) {
            if (o.upsample_conv)
                G.add<nn::UpsampleConv2d>(2, in, out, 3, init);
            else
                G.add<nn::ConvTranspose2d>(in, out, 4, init, up);
        };
        add_upsampling(2 * w, w);
        G.add<nn::BatchNorm2d>(w);
        G.add<nn::ReLU>();
        add_upsampling(w, o.channels);
        G.add<nn::Tanh>();

        // Each convolution applies its LeakyReLU(0.2) as it stores its output.
        const nn::Conv2dOptions down{.stride = 2, .padding = 1, .activation = ember::ConvActivation::leaky_relu(0.2)};
        D.add<nn::Conv2d>(o.channels, v, 4, init, down);
        D.add<nn::Conv2d>(v, 2 * v, 4, init, down);
        D.add<nn::Flatten>();
        D.add<nn::Linear>(2 * v * 7 * 7, 1, init);
    }

    // Images G(z) from noise z [N, latent], in [-1, 1], [N,C,28,28], without a graph and
    // with BatchNorm's running statistics (Module::infer), 1000 at a time: the activations of
    // a batch take about 1 MB per image.
    Tensor sample(const Tensor& z) {
        constexpr ember::Index chunk = 1000;
        const ember::Index n = z.dim(0);
        if (n <= chunk) return G.infer(z);
        Tensor images = Tensor::empty(ember::Shape{n, channels, 28, 28});
        for (ember::Index i = 0; i < n; i += chunk) {
            const ember::Index j = std::min(n, i + chunk);
            images.slice(0, i, j).copy_from(G.infer(z.slice(0, i, j).contiguous()));
        }
        return images;
    }
    // The same images in [0, 1], for pictures and samples.npy.
    Tensor sample01(const Tensor& z) { return ember::symmetric_to_unit(sample(z)); }

    ember::Index latent, channels;
    ember::nn::Sequential<float> G, D;
};

// T(x, z) on concatenated pairs: x flattened [B, 784·C], z [B, latent] -> scores [B, 1].
struct StatisticsNet {
    StatisticsNet(ember::Index latent, ember::Index channels, ember::Generator& init) {
        net.add<ember::nn::Linear>(784 * channels + latent, 512, init);
        net.add<ember::nn::LeakyReLU>(0.2);
        net.add<ember::nn::Linear>(512, 1, init);
    }
    ember::Var<float> operator()(const ember::Var<float>& x_flat, const ember::Var<float>& z) {
        return net(ember::concat<float>({x_flat, z}, 1));
    }
    ember::nn::Sequential<float> net;
};

struct Meg {
    Meg(ember::Generator& init, const ConvGanOptions& nets, double lr)
        : gan(init, nets), T(nets.latent, nets.channels, init), opt_G(gan.G.parameters(), adam(lr)),
          opt_U(gan.D.parameters(), adam(lr)), opt_T(T.net.parameters(), adam(lr)) {}
    static ember::AdamOptions adam(double lr) { return {.lr = lr, .betas = {0.5, 0.9}}; }
    void set_lr(double lr) { opt_U.set_lr(lr), opt_G.set_lr(lr), opt_T.set_lr(lr); }

    ConvGan gan;  // G and the energy U (gan.D), both initialised before T from `init`
    StatisticsNet T;
    ember::Adam<float> opt_G, opt_U, opt_T;
};

}  // namespace ember_examples
