// realnvp_mnist: a multi-scale normalising flow in the manner of RealNVP (Dinh, Sohl-Dickstein &
// Bengio 2017) and Glow (Kingma & Dhariwal 2018) on dequantised MNIST, trained by maximum
// likelihood and reported in bits per dimension (docs/math.md §6, docs/flows.md). The flow f,
// LogitTransform, then affine couplings with ActNorm and invertible 1x1 convolutions at three
// scales, is in common/realnvp_nets.hpp.
//
//   x = (pixel + u) / 256, u ~ U[0,1)                        flow::dequantize_pixels   (§6.4)
//   log p(x) = log N(f(x); 0, I) + log|det ∂f/∂x|            flow::Flow::log_prob      (§6.1-§6.3)
//   bits/dim = (-log p(x) + D log 256) / (D log 2), D = 784  flow::bits_per_dim        (§6.4)
//   samples  x = f⁻¹(τ z), z ~ N(0, I), clamped to [0, 1]    flow::Flow::sample
//
// Training: Adam on the mean bits/dim of a batch (= mean -log p(x) up to constants), each
// batch dequantised afresh; the lr warmed up linearly over --warmup steps, then (--lr-decay)
// falling linearly to 0 at the end; the gradient's norm clipped at --clip. ActNorm is
// initialised from the data (512 training images). The default run (8 epochs, 7496 steps of
// 64) took 5977 s with --threads 2 and reached 1.719 test bits/dim after epoch 1, 1.492 after
// epoch 5 and 1.426 at the end; published multi-scale flows reach ~1.05 with far more compute.
//
// Writes to --out: samples.png (10x10 grid at --temperature from fixed noise, every epoch),
// samples.npy (float32 [N,1,28,28] in [0,1]), metrics.csv (train bits/dim every 50 steps, test
// bits/dim at the end of every epoch), bpd.png, checkpoint.safetensors (every epoch; --resume
// continues from it bit for bit) and summary.json. `--help` lists the flags.
#include <cmath>

#include "common/realnvp_nets.hpp"
#include "common/run.hpp"

namespace {

namespace flow = ember::flow;
using ember::Index;
using ember::Tensor;
using Var = ember::Var<float>;

struct Options : ember_examples::ExampleOptions {
    ember_examples::RealNvpOptions flow;
    double clip = 50.0, temperature = 1.0;
    std::int64_t warmup = 200;
    bool lr_decay = true;     // after the warm-up, the lr falls linearly to 0 over the run
    Index test_images = 0;    // 0: the whole test set
};

// Mean bits/dim of `pixels` [M,1,28,28] (0..255), with the same dequantisation noise at every
// evaluation so that the values of different epochs compare.
double test_bits_per_dim(flow::Flow<float>& f, const Tensor<float>& pixels, std::uint64_t seed) {
    ember::NoGrad no_grad;
    ember::Generator noise(seed);
    double total = 0;
    for (Index s = 0; s < pixels.dim(0); s += 500) {
        const Tensor<float> x = flow::dequantize_pixels(pixels.slice(0, s, std::min(pixels.dim(0), s + 500)).contiguous(), noise);
        const Tensor<float> bpd = flow::bits_per_dim(f.log_prob(Var(x)), 784).value();
        for (Index i = 0; i < bpd.numel(); ++i) total += static_cast<double>(bpd.data()[i]);
    }
    return total / static_cast<double>(pixels.dim(0));
}

// n samples at temperature τ, 100 at a time, clamped to [0, 1] (with α > 0 the inverse logit
// reaches slightly outside), as [n,1,28,28].
Tensor<float> draw_samples(flow::Flow<float>& f, Index n, ember::Generator& gen, double temperature) {
    ember::NoGrad no_grad;
    Tensor<float> out = Tensor<float>::empty(ember::Shape{n, 1, 28, 28});
    for (Index s = 0; s < n; s += 100) {
        const Index m = std::min<Index>(100, n - s);
        const Tensor<float> x = Tensor<float>(ember::clamp(f.sample(m, gen, temperature).value(), 0.0, 1.0)).contiguous();
        std::copy_n(x.data(), x.numel(), out.data() + s * 784);
    }
    return out;
}

int train(Options& o) {
    EMBER_CHECK(o.flow.alpha <= 0.49, o.name.c_str(), "--alpha must be in [0, 0.49], got ", o.flow.alpha);
    const ember::ImageSet data = ember_examples::load_images(o, true), test = ember_examples::load_images(o, false);
    const Index N = data.images.dim(0);
    const Index n_test = o.test_images > 0 ? std::min(o.test_images, test.images.dim(0)) : test.images.dim(0);
    const Tensor<float> test_pixels = test.images.slice(0, 0, n_test).contiguous();
    ember::BatchIterator<float> batches(data.images,  // 8-bit pixels, dequantised at every step
                                        {.batch_size = o.batch, .shuffle = true, .drop_last = true, .seed = o.seed});
    ember_examples::TrainingRun run(o, {.batches_per_epoch = batches.batches_per_epoch(), .log_every = 50,
                                        .progress_every = 200});

    ember::Generator init(o.seed), noise(o.seed + 1);  // noise: the dequantisation of every step
    flow::Flow<float> f = ember_examples::make_realnvp(o.flow, init);
    ember::Adam<float> opt(f.parameters(), {.lr = o.lr});
    run.checkpoint.add("flow", f).add("opt", opt, f).add("noise", noise).add("step", run.step);
    if (!o.resume) {  // ActNorm's data-dependent initialisation, with noise of its own (a resumed run skips it)
        ember::Generator g(o.seed + 4);
        ember::NoGrad no_grad;
        f.forward_and_logdet(Var(flow::dequantize_pixels(data.images.slice(0, 0, std::min<Index>(512, N)).contiguous(), g)));
    }
    ember_examples::MetricsWindow window(run, {"train_bpd", "grad_norm"}, {"test_bpd"});
    run.start({{"images", N}, {"test images", n_test}, {"flow", f.describe()}, {"flow steps", f.size()},
               {"parameters", f.parameter_count()}});

    auto save_pictures = [&] {
        ember::Generator g(o.seed + 2);  // the same 100 latents for every picture
        ember::save_image_grid(run.out / "samples.png", draw_samples(f, 100, g, o.temperature), 10, 0.0, 1.0);
        ember::save_metrics_plot(run.out / "metrics.csv", run.out / "bpd.png", {"train_bpd", "test_bpd"});
    };
    double test_bpd = NAN;
    batches.seek(run.step);
    while (run.running()) {
        // The lr: a linear warm-up, then (--lr-decay) a linear fall to 0; functions of the step for --resume.
        const double peak = o.lr_decay ? ember_examples::linearly_decayed_lr(o.lr, run.step, run.total) : o.lr;
        opt.set_lr(peak * std::min(1.0, static_cast<double>(run.step + 1) / static_cast<double>(std::max<std::int64_t>(1, o.warmup))));
        const Tensor<float> x = flow::dequantize_pixels(batches.next_wrapping().x, noise);
        opt.zero_grad();
        Var loss = ember::mean(flow::bits_per_dim(f.log_prob(Var(x)), 784));
        loss.backward();
        const double norm = ember::clip_grad_norm_(opt.params(), o.clip);
        opt.step();
        const std::int64_t step = run.finish_step();
        std::vector<std::pair<std::string, double>> test_column;
        if (run.epoch_done()) test_column = {{"test_bpd", test_bpd = test_bits_per_dim(f, test_pixels, o.seed + 5)}};
        window.add(step, {static_cast<double>(loss.item()), norm}, test_column);
        if (run.epoch_done()) run.save_checkpoint(), save_pictures();
    }

    ember::Generator sample_noise(o.seed + 3);
    const Tensor<float> samples = draw_samples(f, o.n_samples, sample_noise, o.temperature);
    ember::save_npy(run.out / "samples.npy", samples);
    // A resumed run that had already finished evaluates the model it loaded.
    if (std::isnan(test_bpd)) test_bpd = test_bits_per_dim(f, test_pixels, o.seed + 5);
    run.result("test bits/dim (" + std::to_string(n_test) + " images)", test_bpd);
    run.quality(samples);
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "realnvp_mnist", o.epochs = 8, o.batch = 64, o.lr = 1e-3;
    ember_examples::Flags flags("realnvp_mnist: a multi-scale RealNVP/Glow-style flow on dequantised MNIST, in bits/dim", o);
    using ember_examples::Check;
    flags.add("--clip", o.clip, "gradient clipping: maximum total norm", Check::positive);
    flags.add("--lr-decay", o.lr_decay, "decay the lr linearly to 0 over the run (1) or keep it constant after the warm-up (0)");
    flags.add("--warmup", o.warmup, "steps of linear learning-rate warm-up", Check::non_negative);
    flags.add("--steps", o.flow.steps, "flow steps per scale", Check::positive);
    flags.add("--full-res-steps", o.flow.full_res_steps,
              "checkerboard couplings at 28x28 before the first squeeze (conditioner width --hidden/2)", Check::non_negative);
    flags.add("--hidden", o.flow.hidden, "conditioner channels at scale 1 (twice at scale 2)", Check::positive);
    flags.add("--alpha", o.flow.alpha, "logit transform's α, in [0, 0.49]", Check::unit_interval);
    flags.add("--temperature", o.temperature, "sampling temperature (1: the model itself; lower thins the strokes, see docs/flows.md)",
              Check::positive);
    flags.add("--test-images", o.test_images, "test images for bits/dim (0: all 10000)", Check::non_negative);
    flags.quick_default("--test-images", o.test_images, Index{500});
    return flags.run(argc, argv, {.iters = 30}, [&] { return train(o); });
}
