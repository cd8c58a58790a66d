#pragma once
// The networks of examples/ebgan_mnist.cpp (Zhao, Mathieu & LeCun 2017; docs/math.md §3), whose
// train_step bench/bench_models.cpp times beside the same step in PyTorch (bench/torch_bench.py).
//
// Architecture: PyTorch-GAN's EBGAN, for 28x28 images in [-1, 1], with the generator's two
// 3x3 convolutions at half that code's width (128->64 and 64->32 instead of 128->128 and
// 128->64), so that one training step is 12.7 GFLOP instead of 35.0:
//
//   G: z (62) -> Linear -> 128x7x7 -> Upsample 2 -> Conv3x3 128->64 -> BN -> LeakyReLU(0.2)
//                                  -> Upsample 2 -> Conv3x3 64->32  -> BN -> LeakyReLU(0.2)
//                                  -> Conv3x3 32->1 -> Tanh                   (1x28x28)
//   D, an auto-encoder:
//     Enc: x -> Conv3x3 stride 2 1->64 -> ReLU -> Linear 64·14·14 -> 32          (the code S)
//     Dec: S -> BN -> ReLU -> Linear 32 -> 64·14·14 -> BN -> ReLU -> Upsample 2 -> Conv3x3 64->1
//   BatchNorm with PyTorch's default eps 1e-5. The reference code writes BatchNorm2d(C, 0.8),
//   which passes 0.8 as eps (momentum was surely meant); EbganOptions::bn_eps = 0.8 restores it.
//   Each "Upsample 2 -> Conv3x3" is one nn::UpsampleConv2d: the same function and parameters,
//   computed as four 2x2 convolutions of the small image (ember/ops/upsample_conv.hpp), which
//   needs 0.44-0.51x of the multiply-adds that the FLOP count below (and PyTorch) spends.
//   Adam (lr 2e-4, betas 0.5 / 0.999) for both, PyTorch's default initialisation.
//
// FLOPs of one training step at batch 64 (2 per multiply-add; the convolutions and linear layers):
//   G forward 29.5 M multiply-adds per image -> 3.78 GFLOP per batch, and its backward
//   (input and weight gradients) twice that: 11.3 GFLOP for G in all.
//   D forward 1.37 M multiply-adds per image; the D step does 2 batches forward and
//   backward (weights and activations, 1.03 GFLOP), the G step one batch forward and
//   backward to its input only (D frozen, 0.35 GFLOP). Total 12.7 GFLOP per step.
#include <ember/ember.hpp>

namespace ember_examples {

struct EbganOptions {
    ember::Index latent = 62;  // PyTorch-GAN's latent size for EBGAN
    double lr = 2e-4;
    double beta1 = 0.5, beta2 = 0.999;
    double margin = 1.0;     // m: the reference code's max(1, batch/64) for batch 64
    double lambda_pt = 0.1;  // the paper's weight of the pulling-away term
    // eps of the BatchNorms after the convolutions and the code. The reference code passes 0.8
    // (BatchNorm2d(C, 0.8), which PyTorch reads as eps, not momentum); with it the generator
    // collapses to one image within 300 steps (docs/results.md), with PyTorch's 1e-5 it does not.
    double bn_eps = 1e-5;
};

// The discriminator: an auto-encoder whose children are the encoder ("enc", to the code S)
// and the decoder ("dec"), so that its parameters are "enc.0.weight", ..., "dec.6.bias".
class AutoEncoder : public ember::nn::Module<float> {
public:
    AutoEncoder()
        : enc(register_module("enc", std::make_shared<ember::nn::Sequential<float>>())),
          dec(register_module("dec", std::make_shared<ember::nn::Sequential<float>>())) {}
    // The reconstruction Dec(Enc(x)).
    ember::Var<float> forward(const ember::Var<float>& x) override { return (*dec)((*enc)(x)); }
    std::string describe() const override { return "AutoEncoder"; }

    std::shared_ptr<ember::nn::Sequential<float>> enc, dec;
};

class Ebgan {
public:
    using Var = ember::Var<float>;
    using Tensor = ember::Tensor<float>;

    Ebgan(ember::Generator& init, EbganOptions o = {}) : options(o) {
        namespace nn = ember::nn;
        const nn::BatchNormOptions bn{.eps = o.bn_eps};
        const nn::Conv2dOptions same{.padding = 1};
        G.add<nn::Linear>(o.latent, 128 * 7 * 7, init);
        G.add<nn::Reshape>(std::vector<ember::Index>{128, 7, 7});
        G.add<nn::UpsampleConv2d>(2, 128, 64, 3, init);
        G.add<nn::BatchNorm2d>(64, bn);
        G.add<nn::LeakyReLU>(0.2);
        G.add<nn::UpsampleConv2d>(2, 64, 32, 3, init);
        G.add<nn::BatchNorm2d>(32, bn);
        G.add<nn::LeakyReLU>(0.2);
        G.add<nn::Conv2d>(32, 1, 3, init, same);
        G.add<nn::Tanh>();

        nn::Sequential<float>&enc = *D.enc, &dec = *D.dec;
        enc.add<nn::Conv2d>(1, 64, 3, init, nn::Conv2dOptions{.stride = 2, .padding = 1});
        enc.add<nn::ReLU>();
        enc.add<nn::Flatten>();
        enc.add<nn::Linear>(64 * 14 * 14, 32, init);
        dec.add<nn::BatchNorm1d>(32, bn);
        dec.add<nn::ReLU>();
        dec.add<nn::Linear>(32, 64 * 14 * 14, init);
        dec.add<nn::BatchNorm1d>(64 * 14 * 14);  // PyTorch's default eps here, as in the reference code
        dec.add<nn::ReLU>();
        dec.add<nn::Reshape>(std::vector<ember::Index>{64, 14, 14});
        dec.add<nn::UpsampleConv2d>(2, 64, 1, 3, init);

        const ember::AdamOptions adam{.lr = o.lr, .betas = {o.beta1, o.beta2}};
        opt_G = std::make_unique<ember::Adam<float>>(G.parameters(), adam);
        opt_D = std::make_unique<ember::Adam<float>>(D.parameters(), adam);
    }

    // Per-sample energies D(x) = MSE(Dec(Enc(x)), x), [B], and the codes Enc(x), [B, 32].
    struct Energy {
        Var energy, code;
    };
    Energy energy(const Var& x) {
        const Var code = (*D.enc)(x);
        return {ember::energy::autoencoder_energy(x, (*D.dec)(code)), code};
    }

    // Images from noise z, in [-1, 1], without a graph, in evaluation mode (BatchNorm with
    // its running statistics; Module::infer).
    Tensor sample(const Tensor& z) { return G.infer(z); }

    ember::nn::Sequential<float> G;
    AutoEncoder D;
    std::unique_ptr<ember::Adam<float>> opt_G, opt_D;
    EbganOptions options;
};

}  // namespace ember_examples
