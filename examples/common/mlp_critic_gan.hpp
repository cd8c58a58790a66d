#pragma once
// The generator and critic of examples/fgan_mnist.cpp (Nowozin, Cseke & Tomioka 2016):
// multilayer perceptrons, small enough that tens of thousands of steps fit in half an hour
// on two cores.
//
//   G: z (latent, N(0, I)) -> hidden -> hidden -> 784, ReLU between layers, Tanh at the end
//      (images in [-1, 1])
//   D: x (784) -> hidden -> hidden -> 1, LeakyReLU(0.2) between layers, no output activation
//      (f-GAN's unconstrained v before the divergence's output activation g_f)
//   both trained by Adam(lr, betas 0.5 / 0.999).
//
// No normalisation layers, as in the f-GAN paper's MNIST critic; PyTorch's default
// initialisation.
#include <ember/ember.hpp>
#include <memory>

namespace ember_examples {

struct MlpCriticGanOptions {
    ember::Index latent = 128;
    ember::Index hidden = 512;
    double lr = 2e-4;
};

struct MlpCriticGan {
    using Var = ember::Var<float>;
    using Tensor = ember::Tensor<float>;

    MlpCriticGan(ember::Generator& init, MlpCriticGanOptions o = {}) : latent(o.latent) {
        namespace nn = ember::nn;
        G.add<nn::Linear>(o.latent, o.hidden, init);
        G.add<nn::ReLU>();
        G.add<nn::Linear>(o.hidden, o.hidden, init);
        G.add<nn::ReLU>();
        G.add<nn::Linear>(o.hidden, 784, init);
        G.add<nn::Tanh>();
        D.add<nn::Linear>(784, o.hidden, init);
        D.add<nn::LeakyReLU>(0.2);
        D.add<nn::Linear>(o.hidden, o.hidden, init);
        D.add<nn::LeakyReLU>(0.2);
        D.add<nn::Linear>(o.hidden, 1, init);
        const ember::AdamOptions adam{.lr = o.lr, .betas = {0.5, 0.999}};
        opt_G = std::make_unique<ember::Adam<float>>(G.parameters(), adam);
        opt_D = std::make_unique<ember::Adam<float>>(D.parameters(), adam);
    }

    // Images from noise z [N, latent], in [0, 1] as [N,1,28,28], without a graph.
    Tensor sample01(const Tensor& z) { return ember::symmetric_to_unit(G.infer(z)).reshape(ember::Shape{z.dim(0), 1, 28, 28}); }

    ember::Index latent;
    ember::nn::Sequential<float> G, D;
    std::unique_ptr<ember::Adam<float>> opt_G, opt_D;
};

}  // namespace ember_examples
