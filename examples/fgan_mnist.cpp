// fgan_mnist: f-GAN (Nowozin, Cseke & Tomioka 2016) on MNIST: a generator trained to
// minimise a chosen f-divergence D_f(P_data || Q_G) through its variational (Fenchel-dual)
// lower bound, with the generator and critic of common/mlp_critic_gan.hpp (MATH.md §4).
//
//   D_f(P||Q) = ∫ q f(p/q)  >=  F(θ, ω) = E_P[g_f(V_ω(x))] - E_Q[f*(g_f(V_ω(G_θ(z))))]
//
//   V_ω     the critic's unconstrained output; g_f its output activation, which keeps
//           T = g_f(V) inside the domain of the conjugate f* (the table in
//           divergence/fdiv.hpp: e.g. kl: g = v, f*(t) = e^{t-1}; gan: g = -softplus(-v),
//           f*(t) = -log(1 - e^t))
//   critic  max_ω F: minimise fdiv::critic_loss = E_Q[f*(g_f(v_q))] - E_P[g_f(v_p)]
//           (f*(g_f(v)) in the library's closed forms, finite for every v)
//   G       min_θ F. With --g-loss alt (default) the paper's practical variant
//           max_θ E_Q[g_f(V_ω(G(z)))] (fdiv::generator_loss_alt): the same fixed points,
//           stronger gradients while Q is far from P; --g-loss saddle uses -E_Q[f*(g_f(v_q))]
//           itself (fdiv::generator_loss).
//   One critic step then one generator step per batch, both Adam(lr 2e-4, β = (0.5, 0.999))
//   (the paper's single-step gradient method updates both from the same batch; the
//   generator step here reuses the batch's samples through the freshly updated critic).
//
// Divergences: kl reverse_kl pearson neyman hellinger js gan tv (--divergence, default js).
// The negated critic loss, F, is the critic's current lower bound on D_f(P_data || Q_G); it
// is logged as `divergence_bound` and drawn in loss.png.
//
//   fgan_mnist [--divergence NAME] [--g-loss alt|saddle] [--data DIR] [--dataset mnist|fashion]
//              [--out DIR] [--epochs N | --iters N] [--batch N] [--lr X] [--latent N]
//              [--hidden N] [--seed N] [--threads N] [--n-samples N] [--classifier FILE]
//              [--resume] [--quick]
//
// Writes to --out: samples.png (10x10 grid from fixed noise, refreshed every epoch),
// samples.npy (float32 [N,1,28,28] in [0,1]), metrics.csv, loss.png and
// checkpoint.safetensors (every epoch and at the end; --resume continues from it, giving the
// same result bit for bit as an uninterrupted run with the same flags; the checkpoint records
// the divergence and a resume with another one is refused).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "common/example.hpp"
#include "common/mlp_critic_gan.hpp"
#include "common/quality.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;
using ember::Var;

namespace {

struct FganOptions {
    std::string divergence = "js";
    std::string g_loss = "alt";
    ember_examples::MlpCriticGanOptions nets;
};

struct StepLosses {
    double critic = 0, generator = 0;
};

int run(ember_examples::ExampleOptions o, const FganOptions& f) {
    const ember::fdiv::AnyDivergence div = ember::fdiv::parse_divergence(f.divergence);
    const int threads = ember_examples::use_threads(o);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: training images, flattened, scaled to [-1, 1] like the generator's Tanh -----
    const ember::ImageSet train = ember_examples::load_images(o, true);
    const Index N = train.images.dim(0);
    const Tensor<float> images = ember::scale_to_symmetric(train.images).reshape(ember::Shape{N, 784});
    ember::BatchIterator<float> batches(images, {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch;

    // ---- model, optimisers, noise and what a checkpoint holds ------------------------------
    ember::Generator init(o.seed);
    ember_examples::MlpCriticGan gan(init, f.nets);
    const ember::AdamOptions adam{.lr = o.lr, .betas = {0.5, 0.999}};
    ember::Adam<float> opt_G(gan.G.parameters(), adam), opt_D(gan.D.parameters(), adam);
    ember::Generator noise(o.seed + 1);  // the z of every step
    const Tensor<float> z_fixed = [&] {  // the same 100 z for every picture
        ember::Generator g(o.seed + 2);
        return ember::normal<float>(ember::Shape{100, f.nets.latent}, g);
    }();
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    ckpt.add("gen", gan.G).add("critic", gan.D).add("opt_gen", opt_G, gan.G).add("opt_critic", opt_D, gan.D);
    ckpt.add("noise", noise).add("step", step);
    const std::map<std::string, std::string> about{
        {"example", o.name}, {"dataset", o.dataset}, {"divergence", f.divergence}, {"g_loss", f.g_loss}};
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), o.name.c_str(), "--resume: no checkpoint at ", ckpt_path.string());
        // The divergence is no tensor: compare it with the metadata written at save time.
        const auto meta = ember::load_safetensors<float>(ckpt_path).metadata;
        for (const char* key : {"divergence", "g_loss"}) {
            const auto it = meta.find(key);
            EMBER_CHECK(it != meta.end() && it->second == about.at(key), o.name.c_str(), "--resume: the checkpoint ",
                        ckpt_path.string(), " was written with --", key == std::string("g_loss") ? "g-loss" : key, " ",
                        it == meta.end() ? std::string("(unknown)") : it->second, ", not ", about.at(key));
        }
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    std::printf("fgan_mnist: divergence %s (%s), generator loss %s; %s, %lld images; G %lld and D %lld parameters "
                "(latent %lld, hidden %lld); batch %lld, Adam lr %g betas (0.5, 0.999), %lld steps (%lld per epoch), "
                "seed %llu, %d threads\n",
                f.divergence.c_str(), ember::fdiv::visit_divergence(div, []<class D>(D) { return D::title; }),
                f.g_loss.c_str(), o.dataset.c_str(), static_cast<long long>(N),
                static_cast<long long>(gan.G.parameter_count()), static_cast<long long>(gan.D.parameter_count()),
                static_cast<long long>(f.nets.latent), static_cast<long long>(f.nets.hidden),
                static_cast<long long>(o.batch), o.lr, static_cast<long long>(total), static_cast<long long>(per_epoch),
                static_cast<unsigned long long>(o.seed), threads);
    std::fflush(stdout);

    auto save_pictures = [&] {
        ember::save_image_grid(out / "samples.png", gan.sample01(z_fixed), 10, 0.0, 1.0);
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", {"divergence_bound", "loss_g"});
    };

    // One critic step and one generator step on a batch of real images x and noise z, for
    // the divergence D (a type from fdiv::All).
    const bool alt = f.g_loss == "alt";
    auto train_step = [&]<class D>(D, const Var<float>& x, const Tensor<float>& z) {
        StepLosses l;
        const Index B = x.dim(0);
        const Var<float> fake = gan.G(Var<float>(z));
        // Critic: max_ω E_P[g_f(v_p)] - E_Q[f*(g_f(v_q))], one pass over [real; fake].
        const Var<float> v = gan.D(ember::concat<float>({x, fake.detach()}, 0));
        const Var<float> loss_d = ember::fdiv::critic_loss<D>(ember::slice(v, 0, 0, B), ember::slice(v, 0, B, 2 * B));
        opt_D.zero_grad();
        ember::backward(loss_d);
        opt_D.step();
        // Generator, through the updated critic whose parameters are frozen meanwhile.
        gan.D.requires_grad(false);
        const Var<float> v_q = gan.D(fake);
        const Var<float> loss_g = alt ? ember::fdiv::generator_loss_alt<D>(v_q) : ember::fdiv::generator_loss<D>(v_q);
        opt_G.zero_grad();
        ember::backward(loss_g);
        opt_G.step();
        gan.D.requires_grad(true);
        l.critic = loss_d.item(), l.generator = loss_g.item();
        return l;
    };

    // ---- training ---------------------------------------------------------------------------
    ember::MetricsLog metrics(out / "metrics.csv", step, {"epoch", "divergence_bound", "loss_critic", "loss_g"});
    ember::Progress progress(total, {.label = o.name, .start_step = step, .every_steps = 1000});
    const std::int64_t log_every = 50;
    double win_c = 0, win_g = 0, last_bound = NAN, last_g = NAN;
    int in_window = 0;
    batches.seek(step);
    while (step < total) {
        const ember::MiniBatch<float> batch = batches.next_wrapping();
        const Tensor<float> z = ember::normal<float>(ember::Shape{o.batch, f.nets.latent}, noise);
        const Var<float> x(batch.x);
        const StepLosses l = ember::fdiv::visit_divergence(div, [&]<class D>(D d) { return train_step(d, x, z); });
        EMBER_CHECK(std::isfinite(l.critic) && std::isfinite(l.generator), o.name.c_str(), "step ", step + 1,
                    ": the losses are not finite (critic ", l.critic, ", generator ", l.generator,
                    "); try a smaller --lr");
        ++step;
        win_c += l.critic, win_g += l.generator, ++in_window;
        progress.update(step, {{"bound", -l.critic}, {"loss_g", l.generator}});
        if (step % log_every == 0 || step == total) {
            last_bound = -win_c / in_window, last_g = win_g / in_window;
            metrics.write(step, {{"epoch", static_cast<double>(step) / static_cast<double>(per_epoch)},
                                 {"divergence_bound", last_bound},
                                 {"loss_critic", win_c / in_window},
                                 {"loss_g", last_g}});
            win_c = win_g = 0, in_window = 0;
        }
        if (step % per_epoch == 0 || step == total) {
            ckpt.save(ckpt_path, about);
            save_pictures();
        }
    }
    progress.finish();

    // ---- samples for evaluation ---------------------------------------------------------------
    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> samples = gan.sample01(ember::normal<float>(ember::Shape{o.n_samples, f.nets.latent}, sample_noise));
    ember_examples::write_samples(out, samples);
    save_pictures();

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("fgan_mnist: %s, %lld steps in %.1f s; last logged window: bound on D_f %.4f, generator loss %.4f; "
                "wrote %s/{samples.png, samples.npy, metrics.csv, loss.png, checkpoint.safetensors}\n",
                f.divergence.c_str(), static_cast<long long>(step), seconds, last_bound, last_g, o.out.c_str());
    std::fflush(stdout);
    ember_examples::report_sample_quality(o, samples);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "fgan_mnist", o.epochs = 30, o.batch = 64, o.lr = 2e-4;
    FganOptions f;
    std::vector<std::string> names;
    for (std::string_view n : ember::fdiv::divergence_names()) names.emplace_back(n);
    CLI::App app{"fgan_mnist: f-GAN on MNIST (Nowozin, Cseke & Tomioka 2016)"};
    app.add_option("--divergence", f.divergence, "the f-divergence to minimise")->check(CLI::IsMember(names))->capture_default_str();
    app.add_option("--g-loss", f.g_loss, "generator loss: alt (max E_Q g_f(v), the paper's practice) or saddle (min -E_Q f*(g_f(v)))")
        ->check(CLI::IsMember({"alt", "saddle"}))
        ->capture_default_str();
    ember_examples::add_common_options(app, o);
    app.add_option("--latent", f.nets.latent, "dimension of z")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--hidden", f.nets.hidden, "units of the hidden layers of G and D")->check(CLI::PositiveNumber)->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    if (app.count("--out") == 0) o.out = "out/fgan_mnist_" + f.divergence;  // one directory per divergence
    ember_examples::apply_quick(app, o, 200);
    return ember_examples::run_main(o.name, [&] { return run(o, f); });
}
