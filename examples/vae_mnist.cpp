// vae_mnist: the variational auto-encoder of Kingma & Welling (2014) with multilayer
// perceptrons, on dynamically binarised MNIST, evaluated by the ELBO and by the
// importance-weighted bound of Burda et al. (2016) with K = 1000 samples (MATH.md §5).
//
//   encoder  q(z|x) = N(μ(x), diag exp(logvar(x))):  x (784) -> 400 -> 400 -> (μ, logvar) (2·latent)
//   decoder  p(x|z) = Π_i Bernoulli(x_i; σ(a_i(z))):  z (latent) -> 400 -> 400 -> logits a (784)
//   prior    p(z)   = N(0, I)                         ReLU between layers
//
//   ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z)) <= log p(x)
//             (one reparameterised z = μ + exp(½logvar)·ε per image, the KL in closed form)
//   training: Adam on -mean ELBO over a batch (lr constant for the first half of the steps,
//             then decayed exponentially to --lr-final); each time an image is used it is binarised
//             afresh, x ~ Bernoulli(pixel/255) ("dynamic binarisation"), which regularises
//             the model much like data augmentation
//   test:     the 10000 test images binarised once with a fixed seed (the same for every run),
//             test ELBO (one z per image) every epoch, and at the end
//             IWAE_K(x) = log (1/K) Σ_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x),
//             which rises towards log p(x) with K; -IWAE_1000 is the reported test NLL.
//             The K log-weights of a batch of images are computed --iw-chunk samples at a
//             time, so memory stays bounded (chunk · batch · 784 floats).
// Samples: z ~ p(z) decoded to the Bernoulli means σ(a(z)) (grey-level images, as is usual
// for pictures of binary VAEs).
//
//   vae_mnist [--data DIR] [--dataset mnist|fashion] [--out DIR] [--epochs N | --iters N]
//             [--batch N] [--lr X] [--lr-final X] [--latent N] [--hidden N] [--iw-samples K] [--iw-images N]
//             [--iw-chunk N] [--seed N] [--threads N] [--n-samples N] [--classifier FILE]
//             [--resume] [--quick]
//
// Writes to --out: samples.png (10x10 grid from fixed prior noise, refreshed every epoch),
// samples.npy (float32 [N,1,28,28] in [0,1]), metrics.csv, elbo.png (train and test ELBO),
// and checkpoint.safetensors (every epoch and at the end; --resume continues from it, giving
// the same result bit for bit as an uninterrupted run with the same flags).
//
// Published numbers for comparison (dynamically binarised MNIST, one stochastic layer):
// Burda et al. 2016, Table 1: VAE trained with k = 1, test NLL (IWAE_5000) 86.76 nats;
// those models trained for 3280 passes, ours for a few dozen (docs/results.md).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "common/example.hpp"
#include "common/quality.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;
using ember::Var;

namespace {

struct VaeOptions {
    Index latent = 50, hidden = 400;
    Index iw_samples = 1000;  // K of the importance-weighted bound
    Index iw_images = 0;      // test images for the IW bound (0: all)
    Index iw_chunk = 100;     // samples of z per decoder pass in the IW bound
    double lr_final = 1e-4;   // the lr decays exponentially from --lr to this over the second half
};

// The learning rate at a step: constant for the first half of training, then exponential
// decay to lr_final at the last step. A function of the step alone, so a resumed run sets the
// same rates as an uninterrupted one.
double lr_at(std::int64_t step, std::int64_t total, double lr, double lr_final) {
    const std::int64_t half = total / 2;
    if (step <= half || total - half <= 1) return lr;
    return lr * std::pow(lr_final / lr, static_cast<double>(step - half) / static_cast<double>(total - 1 - half));
}

// The seed of the one binarisation of the test set: fixed, so that every run (any --seed)
// is evaluated on the same binary images.
constexpr std::uint64_t kTestBinarizationSeed = 20140101;

struct Vae {
    ember::nn::Sequential<float> enc, dec;
    Index latent;

    Vae(ember::Generator& init, const VaeOptions& v) : latent(v.latent) {
        namespace nn = ember::nn;
        enc.add<nn::Linear>(784, v.hidden, init);
        enc.add<nn::ReLU>();
        enc.add<nn::Linear>(v.hidden, v.hidden, init);
        enc.add<nn::ReLU>();
        enc.add<nn::Linear>(v.hidden, 2 * v.latent, init);  // μ and logvar side by side
        dec.add<nn::Linear>(v.latent, v.hidden, init);
        dec.add<nn::ReLU>();
        dec.add<nn::Linear>(v.hidden, v.hidden, init);
        dec.add<nn::ReLU>();
        dec.add<nn::Linear>(v.hidden, 784, init);  // Bernoulli logits
    }

    // q(z|x) of images x [B, 784]: μ and logvar, [B, latent] each.
    std::pair<Var<float>, Var<float>> encode(const Var<float>& x) {
        const Var<float> h = enc(x);
        return {ember::slice(h, 1, 0, latent), ember::slice(h, 1, latent, 2 * latent)};
    }

    // Per-image ELBO [B] with one reparameterised z per image, noise from `gen`.
    Var<float> elbo(const Var<float>& x, ember::Generator& gen) {
        const auto [mu, logvar] = encode(x);
        const Var<float> z = ember::reparameterize(mu, logvar, gen);
        return ember::elbo(ember::bernoulli_log_prob(x, dec(z)), mu, logvar);
    }

    // IWAE_K per image [B] (no graph), the K samples in chunks of `chunk`.
    Tensor<float> iwae(const Tensor<float>& x, Index K, Index chunk, ember::Generator& gen) {
        ember::NoGrad no_grad;
        const Index B = x.dim(0);
        const auto [mu, logvar] = encode(Var<float>(x));
        std::vector<Var<float>> log_w;  // [k, B] blocks of log p(x,z_k) - log q(z_k|x)
        for (Index k0 = 0; k0 < K; k0 += chunk) {
            const Index k = std::min(chunk, K - k0);
            const Var<float> z = ember::reparameterize(mu, logvar, k, gen);  // [k, B, latent]
            const Var<float> logits = ember::reshape(dec(ember::reshape(z, ember::Shape{k * B, latent})),
                                                     ember::Shape{k, B, 784});
            log_w.push_back(ember::iwae_log_weights(ember::bernoulli_log_prob(Var<float>(x), logits), z, mu, logvar));
        }
        return ember::iwae_bound(ember::concat(log_w, 0)).value();
    }

    // Bernoulli means σ(a(z)) as images [N,1,28,28] in [0,1].
    Tensor<float> decode_means(const Tensor<float>& z) {
        ember::NoGrad no_grad;
        return Tensor<float>(ember::sigmoid(dec(Var<float>(z)).value())).reshape(ember::Shape{z.dim(0), 1, 28, 28});
    }
};

// Mean over `images` [M, 784] of a per-image quantity computed in batches of `batch`.
template <class F>
double batched_mean(const Tensor<float>& images, Index batch, F&& per_image) {
    double total = 0;
    for (Index i = 0; i < images.dim(0); i += batch) {
        const Tensor<float> v = per_image(images.slice(0, i, std::min(i + batch, images.dim(0))).contiguous());
        for (Index j = 0; j < v.numel(); ++j) total += static_cast<double>(v.data()[j]);
    }
    return total / static_cast<double>(images.dim(0));
}

int run(ember_examples::ExampleOptions o, const VaeOptions& v) {
    const int threads = ember_examples::use_threads(o);
    const auto t0 = std::chrono::steady_clock::now();
    fs::create_directories(o.out);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";

    // ---- data: grey levels in [0, 1] (binarised per batch), a binarised test set ---------
    const ember::ImageSet train = ember_examples::load_images(o, true);
    const ember::ImageSet test = ember_examples::load_images(o, false);
    const Index N = train.images.dim(0), n_test = test.images.dim(0);
    const Tensor<float> images = ember::scale_to_unit(train.images).reshape(ember::Shape{N, 784});
    const Tensor<float> test_bin = [&] {
        ember::Generator g(kTestBinarizationSeed);
        return ember::binarize(Tensor<float>(ember::scale_to_unit(test.images).reshape(ember::Shape{n_test, 784})), g);
    }();
    const Index n_iw = v.iw_images > 0 ? std::min(v.iw_images, n_test) : n_test;
    ember::BatchIterator<float> batches(images, {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    const Index per_epoch = batches.batches_per_epoch();
    const std::int64_t total = o.iters > 0 ? o.iters : std::int64_t{o.epochs} * per_epoch;

    // ---- model and what a checkpoint holds ------------------------------------------------
    ember::Generator init(o.seed);
    Vae vae(init, v);
    // Adam is per parameter, so one optimiser per network is the same as one for both.
    ember::Adam<float> opt_enc(vae.enc.parameters(), {.lr = o.lr}), opt_dec(vae.dec.parameters(), {.lr = o.lr});
    ember::Generator noise(o.seed + 1);  // binarisation and ε of every training step
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    ckpt.add("enc", vae.enc).add("dec", vae.dec).add("opt_enc", opt_enc, vae.enc).add("opt_dec", opt_dec, vae.dec);
    ckpt.add("noise", noise).add("step", step);
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), o.name.c_str(), "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    const Tensor<float> z_fixed = [&] {  // the same 100 z for every picture
        ember::Generator g(o.seed + 2);
        return ember::normal<float>(ember::Shape{100, v.latent}, g);
    }();
    std::printf("vae_mnist: %s, %lld training and %lld test images; latent %lld, hidden %lld, %lld parameters; "
                "batch %lld, Adam lr %g (decaying to %g over the second half), %lld steps (%lld per epoch), IWAE K = %lld on %lld test images, seed %llu, "
                "%d threads\n",
                o.dataset.c_str(), static_cast<long long>(N), static_cast<long long>(n_test),
                static_cast<long long>(v.latent), static_cast<long long>(v.hidden),
                static_cast<long long>(vae.enc.parameter_count() + vae.dec.parameter_count()),
                static_cast<long long>(o.batch), o.lr, v.lr_final, static_cast<long long>(total), static_cast<long long>(per_epoch),
                static_cast<long long>(v.iw_samples), static_cast<long long>(n_iw),
                static_cast<unsigned long long>(o.seed), threads);
    std::fflush(stdout);

    // The test ELBO, one z per image from a generator with a fixed seed (the same noise at
    // every evaluation, and none taken from the training noise, so resuming is unaffected).
    auto test_elbo = [&] {
        ember::NoGrad no_grad;
        ember::Generator g(o.seed + 4);
        return batched_mean(test_bin, 500, [&](const Tensor<float>& x) { return vae.elbo(Var<float>(x), g).value(); });
    };
    const std::map<std::string, std::string> about{{"example", o.name}, {"dataset", o.dataset}};
    auto save_pictures = [&] {
        ember::save_image_grid(out / "samples.png", vae.decode_means(z_fixed), 10, 0.0, 1.0);
        ember::save_metrics_plot(out / "metrics.csv", out / "elbo.png", {"train_elbo", "test_elbo"});
    };

    // ---- training ---------------------------------------------------------------------------
    ember::MetricsLog metrics(out / "metrics.csv", step, {"epoch", "train_elbo", "train_kl", "test_elbo"});
    ember::Progress progress(total, {.label = o.name, .start_step = step, .every_steps = 1000});
    const std::int64_t log_every = 100;
    double window_elbo = 0, window_kl = 0, last_test = NAN, logged_elbo = NAN;
    int in_window = 0;
    batches.seek(step);
    while (step < total) {
        const ember::MiniBatch<float> batch = batches.next_wrapping();
        const Var<float> x(ember::binarize(batch.x, noise));  // a fresh binarisation
        const auto [mu, logvar] = vae.encode(x);
        const Var<float> z = ember::reparameterize(mu, logvar, noise);
        const Var<float> kl = ember::kl_normal_std_mean(mu, logvar);
        const Var<float> elbo = ember::mean(ember::elbo(ember::bernoulli_log_prob(x, vae.dec(z)), mu, logvar));
        const Var<float> loss = -elbo;
        opt_enc.zero_grad(), opt_dec.zero_grad();
        ember::backward(loss);
        const double lr = lr_at(step, total, o.lr, v.lr_final);
        opt_enc.set_lr(lr), opt_dec.set_lr(lr);
        opt_enc.step(), opt_dec.step();
        ++step;
        window_elbo += elbo.item(), window_kl += kl.item(), ++in_window;
        progress.update(step, {{"elbo", elbo.item()}});
        const bool epoch_end = step % per_epoch == 0 || step == total;
        if (step % log_every == 0 || epoch_end) {
            std::vector<std::pair<std::string, double>> row{
                {"epoch", static_cast<double>(step) / static_cast<double>(per_epoch)},
                {"train_elbo", window_elbo / in_window},
                {"train_kl", window_kl / in_window}};
            logged_elbo = window_elbo / in_window;
            if (epoch_end) {
                last_test = test_elbo();
                row.emplace_back("test_elbo", last_test);
                progress.message("step " + std::to_string(step) + ": test ELBO " + std::to_string(last_test));
            }
            metrics.write(step, row);
            window_elbo = window_kl = 0, in_window = 0;
        }
        if (epoch_end) {
            ckpt.save(ckpt_path, about);
            save_pictures();
        }
    }
    progress.finish();
    if (std::isnan(last_test)) last_test = test_elbo();  // a resumed run that had already finished

    // ---- evaluation: importance-weighted test NLL ------------------------------------------
    const auto t_iw = std::chrono::steady_clock::now();
    ember::Generator iw_noise(o.seed + 5);
    const double iw = batched_mean(test_bin.slice(0, 0, n_iw).contiguous(), 100, [&](const Tensor<float>& x) {
        return vae.iwae(x, v.iw_samples, v.iw_chunk, iw_noise);
    });
    const double iw_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_iw).count();

    // ---- samples from the prior -------------------------------------------------------------
    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> samples = vae.decode_means(ember::normal<float>(ember::Shape{o.n_samples, v.latent}, sample_noise));
    ember_examples::write_samples(out, samples);
    save_pictures();

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("vae_mnist: %lld steps in %.1f s; last train window ELBO %.2f; test ELBO %.2f nats; "
                "test NLL (IWAE, K = %lld, %lld images, %.0f s) %.2f nats; wrote %s/{samples.png, samples.npy, "
                "metrics.csv, elbo.png, checkpoint.safetensors}\n",
                static_cast<long long>(step), seconds, logged_elbo, last_test, static_cast<long long>(v.iw_samples),
                static_cast<long long>(n_iw), iw_seconds, -iw, o.out.c_str());
    std::fflush(stdout);
    ember_examples::report_sample_quality(o, samples);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    // Adam 1e-3, batch 100 as Kingma & Welling; 100 epochs with the lr decayed to 1e-4 over the
    // last 50 (50 epochs at a constant 1e-3 reached -96.15 / 90.54 nats, short of the bars).
    o.name = "vae_mnist", o.epochs = 100, o.batch = 100, o.lr = 1e-3;
    VaeOptions v;
    CLI::App app{"vae_mnist: an MLP VAE on dynamically binarised MNIST (Kingma & Welling 2014), "
                 "with the importance-weighted test NLL (Burda et al. 2016)"};
    ember_examples::add_common_options(app, o);
    app.add_option("--latent", v.latent, "dimension of z")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--hidden", v.hidden, "units of each of the two hidden layers of encoder and decoder")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--iw-samples", v.iw_samples, "K of the importance-weighted test NLL")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--iw-images", v.iw_images, "test images for the importance-weighted NLL (0: all)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    app.add_option("--iw-chunk", v.iw_chunk, "samples of z per decoder pass in the importance-weighted NLL (memory)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--lr-final", v.lr_final, "learning rate at the last step (exponential decay from --lr over the second half)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    ember_examples::apply_quick(app, o, 300);
    if (o.quick && app.count("--iw-images") == 0) v.iw_images = 100;
    return ember_examples::run_main(o.name, [&] { return run(o, v); });
}
