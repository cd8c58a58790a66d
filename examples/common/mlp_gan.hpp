#pragma once
// The MLP GAN of examples/gan_mlp_mnist.cpp (Goodfellow et al. 2014, with the
// non-saturating generator loss), shared with bench/bench_models.cpp so that the benchmark
// times exactly the example's training step.
//
//   G: z (64) -> 256 -> 512 -> 784, ReLU between layers, Tanh at the end (images in [-1, 1])
//   D: x (784) -> 512 -> 256 -> 1 logit, LeakyReLU(0.2) between layers
//   both trained by Adam(lr 2e-4, betas 0.5 / 0.999), PyTorch's default initialisation.
//
// One training step on a batch of real images x (flattened, in [-1, 1]) and noise z:
//   fake = G(z)
//   D step:  L_D = E_x[softplus(-D(x))] + E_z[softplus(D(fake))]
//            = -E log σ(D(x)) - E log(1 - σ(D(fake)))   (binary cross-entropy on logits)
//   G step:  L_G = E_z[softplus(-D(fake))]                 (= -E log σ(D(G(z))), non-saturating)
// The D step sees real and fake images in one batch of 2B rows (one pass through D); the
// G step reuses `fake` with its graph and freezes D's parameters, so no gradient is
// computed for them.
//
// `before_update`, when set, runs after each backward and before the optimiser step that
// uses its gradients, with the network being updated (D, then G): data-parallel training
// averages the gradients over the processes there.
#include <ember/ember.hpp>
#include <functional>

namespace ember_examples {

struct MlpGanOptions {
    ember::Index latent = 64;
    ember::Index image = 784;
    double lr = 2e-4;
    double beta1 = 0.5, beta2 = 0.999;
};

struct GanLosses {
    float d = 0, g = 0;
    float d_real = 0;  // mean σ(D(x)): the critic's confidence that real images are real
    float d_fake = 0;  // mean σ(D(G(z))) before the D step
};

class MlpGan {
public:
    using Var = ember::Var<float>;
    using Tensor = ember::Tensor<float>;

    MlpGan(ember::Generator& init, MlpGanOptions o = {}) : o_(o) {
        namespace nn = ember::nn;
        G.add<nn::Linear>(o.latent, 256, init);
        G.add<nn::ReLU>();
        G.add<nn::Linear>(256, 512, init);
        G.add<nn::ReLU>();
        G.add<nn::Linear>(512, o.image, init);
        G.add<nn::Tanh>();
        D.add<nn::Linear>(o.image, 512, init);
        D.add<nn::LeakyReLU>(0.2);
        D.add<nn::Linear>(512, 256, init);
        D.add<nn::LeakyReLU>(0.2);
        D.add<nn::Linear>(256, 1, init);
        const ember::AdamOptions adam{.lr = o.lr, .betas = {o.beta1, o.beta2}};
        opt_G = std::make_unique<ember::Adam<float>>(G.parameters(), adam);
        opt_D = std::make_unique<ember::Adam<float>>(D.parameters(), adam);
    }

    // One D step and one G step; `real` is [B, 784] in [-1, 1], `z` is [B, latent].
    GanLosses step(const Tensor& real, const Tensor& z) {
        const ember::Index B = real.dim(0);
        EMBER_CHECK(real.rank() == 2 && real.dim(1) == o_.image && z.rank() == 2 && z.dim(0) == B &&
                        z.dim(1) == o_.latent,
                    "MlpGan::step", "expected real [B,", o_.image, "] and z [B,", o_.latent, "], got ",
                    real.shape().str(), " and ", z.shape().str());
        if (sign_.shape() != ember::Shape{2 * B, 1}) {
            // +1 for the real rows, -1 for the fake ones: L_D = 2·mean(softplus(-sign·logit)).
            sign_ = Tensor::full(ember::Shape{2 * B, 1}, 1.0f);
            for (ember::Index i = B; i < 2 * B; ++i) sign_.data()[i] = -1.0f;
        }
        GanLosses out;
        const Var fake = G(Var(z));

        // D step on [real; fake], fake detached.
        const Var logits = D(ember::concat<float>({Var(real), fake.detach()}, 0));
        const Var loss_d = 2.0f * ember::mean(Var(ember::softplus(-sign_ * logits)));
        opt_D->zero_grad();
        ember::backward(loss_d);
        if (before_update) before_update(D);
        opt_D->step();
        {
            ember::NoGrad no_grad;
            const Tensor p = ember::sigmoid(logits.value());
            out.d_real = ember::mean(p.slice(0, 0, B)).item();
            out.d_fake = ember::mean(p.slice(0, B, 2 * B)).item();
        }
        out.d = loss_d.item();

        // G step through the updated D, whose parameters are frozen meanwhile.
        D.requires_grad(false);
        const Var loss_g = ember::mean(Var(ember::softplus(-D(fake))));
        opt_G->zero_grad();
        ember::backward(loss_g);
        if (before_update) before_update(G);
        opt_G->step();
        D.requires_grad(true);
        out.g = loss_g.item();
        return out;
    }

    // Images from noise z, in [-1, 1], without a graph.
    Tensor sample(const Tensor& z) { return G.infer(z); }

    ember::nn::Sequential<float> G, D;
    std::unique_ptr<ember::Adam<float>> opt_G, opt_D;
    std::function<void(ember::nn::Module<float>&)> before_update;

private:
    MlpGanOptions o_;
    Tensor sign_;
};

}  // namespace ember_examples
