#pragma once
// The generator and critic of examples/fgan_mnist.cpp: multilayer perceptrons, small
// enough that tens of thousands of steps fit in half an hour on two cores.
//
//   G: z (latent, N(0, I)) -> hidden -> hidden -> 784, ReLU between layers, Tanh at the end
//      (images in [-1, 1])
//   D: x (784) -> hidden -> hidden -> 1, LeakyReLU(0.2) between layers, no output activation
//      (a Wasserstein critic's score, or f-GAN's unconstrained v before its output activation)
//
// No normalisation layers, as in the f-GAN paper's MNIST models' critic; PyTorch's default
// initialisation. (wgan_gp_mnist used these MLPs until session 14; it now uses the
// convolutional nets of conv_gan.hpp, see docs/results.md.)
#include <ember/ember.hpp>

namespace ember_examples {

struct MlpCriticGanOptions {
    ember::Index latent = 128;
    ember::Index hidden = 512;
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
    }

    // Images from noise z [N, latent], in [0, 1] as [N,1,28,28], without a graph.
    Tensor sample01(const Tensor& z) { return ember::symmetric_to_unit(G.infer(z)).reshape(ember::Shape{z.dim(0), 1, 28, 28}); }

    ember::Index latent;
    ember::nn::Sequential<float> G, D;
};

}  // namespace ember_examples
