// fgan_mnist: f-GAN of Nowozin, Cseke & Tomioka (2016) on MNIST (docs/math.md §4.3): the
// generator minimises a chosen f-divergence D_f(P_data || Q_G) through its variational
// (Fenchel-dual) lower bound, which a critic maximises:
//
//   D_f(P||Q) = ∫ q f(p/q)  >=  F(θ, ω) = E_P[g_f(V_ω(x))] - E_Q[f*(g_f(V_ω(G_θ(z))))]
//
//   V_ω     the critic's unconstrained output; its output activation g_f keeps T = g_f(V)
//           in the domain of the conjugate f* (the table of docs/math.md §4.3: e.g. kl:
//           g = v, f*(t) = e^{t-1}; gan: g = -sp(-v), f*(t) = -log(1 - e^t))
//   critic  max_ω F: minimise E_Q[f*(g_f(v_q))] - E_P[g_f(v_p)]      fdiv::critic_loss
//           (f*(g_f(v)) in the library's closed forms, finite for every v)
//   G       --g-loss alt (default), the paper's practical variant:
//           max_θ E_Q[g_f(V_ω(G(z)))]                                 fdiv::generator_loss_alt
//           (the same fixed points, stronger gradients while Q is far from P);
//           --g-loss saddle: min_θ F, i.e. minimise -E_Q[f*(g_f(v_q))]  fdiv::generator_loss
//
// One critic step then one generator step per batch, the generator's through the freshly
// updated critic on the same samples. Divergences (--divergence, default js): kl reverse_kl
// pearson neyman hellinger js gan tv. The negated critic loss, F, is the critic's current
// lower bound on D_f(P_data || Q_G): metrics.csv's divergence_bound.
//
// Networks (common/mlp_critic_gan.hpp): MLPs 128-512-512-784 and 784-512-512-1; batch 64,
// Adam 2e-4 (0.5, 0.999).
//
// Writes to --out (default out/fgan_mnist_<divergence>): samples.png (10x10 grid from fixed
// noise, every epoch and at the end), samples.npy (float32 [N,1,28,28] in [0,1]),
// metrics.csv, loss.png, checkpoint.safetensors (every epoch; --resume continues from it bit
// for bit; it records the divergence and the generator loss, and a resume with others is
// refused) and summary.json. `--help` lists the flags.
#include <cmath>

#include "common/mlp_critic_gan.hpp"
#include "common/run.hpp"

namespace {

using ember::Tensor;
using ember::Var;

struct Options : ember_examples::ExampleOptions {
    std::string divergence = "js", g_loss = "alt";
    ember_examples::MlpCriticGanOptions nets;
};

struct FganLosses {
    double critic, generator;
};

// One critic step, then one generator step through the updated critic, for the divergence
// D (a type of fdiv::All); x [B, 784] in [-1, 1], z [B, latent].
template <class D>
FganLosses train_step(ember_examples::MlpCriticGan& gan, bool alt, const Var<float>& x, const Tensor<float>& z) {
    const ember::Index B = x.dim(0);
    const Var<float> fake = gan.G(Var<float>(z));

    // Critic: v on [x; G(z)] in one pass, G(z) detached.
    const Var<float> v = gan.D(ember::concat<float>({x, fake.detach()}, 0));
    const Var<float> loss_d = ember::fdiv::critic_loss<D>(ember::slice(v, 0, 0, B), ember::slice(v, 0, B, 2 * B));
    gan.opt_D->zero_grad();
    ember::backward(loss_d);
    gan.opt_D->step();

    // Generator, through the updated critic, whose parameters are frozen meanwhile.
    gan.D.requires_grad(false);
    const Var<float> v_q = gan.D(fake);
    const Var<float> loss_g = alt ? ember::fdiv::generator_loss_alt<D>(v_q) : ember::fdiv::generator_loss<D>(v_q);
    gan.opt_G->zero_grad();
    ember::backward(loss_g);
    gan.opt_G->step();
    gan.D.requires_grad(true);
    return {loss_d.item(), loss_g.item()};
}

int train(Options& o) {
    const ember::fdiv::AnyDivergence div = ember::fdiv::parse_divergence(o.divergence);
    const ember::ImageSet data = ember_examples::load_images(o, true);
    ember::BatchIterator<float> batches(ember::scale_to_symmetric(data.images).reshape(ember::Shape{data.images.dim(0), 784}),
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    ember_examples::TrainingRun run(o, {.batches_per_epoch = batches.batches_per_epoch(), .progress_every = 1000});

    ember::Generator init(o.seed), noise(o.seed + 1);  // noise: the z of every step
    o.nets.lr = o.lr;
    ember_examples::MlpCriticGan gan(init, o.nets);
    const Tensor<float> z_fixed = ember_examples::fixed_noise(100, o.nets.latent, o.seed + 2);  // every picture's z
    run.checkpoint.add("gen", gan.G).add("critic", gan.D).add("opt_gen", *gan.opt_G, gan.G).add("opt_critic", *gan.opt_D, gan.D);
    run.checkpoint.add("noise", noise).add("step", run.step);
    run.same_on_resume("--divergence", o.divergence).same_on_resume("--g-loss", o.g_loss);  // in no tensor
    const char* title = ember::fdiv::visit_divergence(div, []<class D>(D) { return D::title; });
    ember_examples::MetricsWindow<double> window(run, {"divergence_bound", "loss_critic", "loss_g"});
    run.start({{"divergence", o.divergence + " (" + title + ")"}, {"generator loss", o.g_loss},
               {"images", data.images.dim(0)}, {"G parameters", gan.G.parameter_count()},
               {"D parameters", gan.D.parameter_count()}, {"latent", o.nets.latent}, {"hidden", o.nets.hidden}});

    auto save_pictures = [&] {
        ember::save_image_grid(run.out / "samples.png", gan.sample01(z_fixed), 10, 0.0, 1.0);
        ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", {"divergence_bound", "loss_g"});
    };
    const bool alt = o.g_loss == "alt";
    batches.seek(run.step);
    while (run.running()) {
        const Var<float> x(batches.next_wrapping().x);
        const Tensor<float> z = ember::normal<float>(ember::Shape{o.batch, o.nets.latent}, noise);
        const FganLosses l = ember::fdiv::visit_divergence(div, [&]<class D>(D) { return train_step<D>(gan, alt, x, z); });
        window.add(run.finish_step(), {-l.critic, l.critic, l.generator});
        if (run.epoch_done()) run.save_checkpoint(), save_pictures();
    }

    const Tensor<float> samples = gan.sample01(ember_examples::fixed_noise(o.n_samples, o.nets.latent, o.seed + 3));
    ember_examples::write_samples(run.out, samples);
    save_pictures();  // samples.png: the fixed-noise grid again
    run.quality(samples);
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "fgan_mnist", o.epochs = 30, o.batch = 64, o.lr = 2e-4;
    std::vector<std::string> names;
    for (std::string_view n : ember::fdiv::divergence_names()) names.emplace_back(n);
    ember_examples::Flags flags("fgan_mnist: f-GAN on MNIST (Nowozin, Cseke & Tomioka 2016)", o);
    using ember_examples::Check;
    flags.choice("--divergence", o.divergence, names, "the f-divergence to minimise");
    flags.choice("--g-loss", o.g_loss, {"alt", "saddle"},
                 "generator loss: alt (max E_Q g_f(v), the paper's practice) or saddle (min -E_Q f*(g_f(v)))");
    flags.add("--latent", o.nets.latent, "dimension of z", Check::positive);
    flags.add("--hidden", o.nets.hidden, "units of the hidden layers of G and D", Check::positive);
    return flags.run(argc, argv, {.iters = 200}, [&] {
        if (!flags.given("--out")) o.out = "out/fgan_mnist_" + o.divergence;  // one directory per divergence
        return train(o);
    });
}
