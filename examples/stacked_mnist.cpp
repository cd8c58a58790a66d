// stacked_mnist: the StackedMNIST mode-collapse benchmark (Metz et al. 2017; Srivastava et
// al. 2017; Lin et al. 2018, *PacGAN*, §5; Kumar et al. 2019, *MEG*). Every real image
// stacks three MNIST digits, drawn independently, into the red, green and blue channels of one
// 28x28 image: 1000 modes (d1, d2, d3), equally likely (ember/data/stacked.hpp). A generator
// that drops modes shows it plainly. After training, the MNIST classifier of classifier_mnist
// reads each channel of 26 000 samples (PacGAN's N; --n-samples) as a digit
// (ember/eval/stacked_modes.hpp):
//
//   modes           modes hit by at least one sample, of 1000 (PacGAN's count)
//   confident modes the same counting only samples whose three digits are all read with
//                   probability >= 0.9; `confident share` is the share of such samples
//   KL to uniform   KL(mode histogram || uniform over 1000): 0.019 for 26 000 samples of the
//                   data itself (the floor), log 1000 = 6.91 for a single mode
//
// --model picks the training, all on the same DCGAN-style nets (common/conv_gan.hpp, 3
// channels) and steps (common/conv_gan_steps.hpp):
//   meg      the maximum-entropy generator, as meg_mnist: energy U with the R1 penalty,
//            G against U plus the JSD estimate of I(G(z); z); latent MALA refines the samples
//            at the end, from the same z, and they are evaluated again ("after MALA")
//   wgan_gp  WGAN-GP, as wgan_gp_mnist: 5 critic steps with the gradient penalty per G step
//   gan      the non-saturating GAN (a DCGAN): the baseline that drops modes
// EBGAN is not among them: its energy is an auto-encoder's reconstruction error, with codes
// for the pulling-away term, which the shared scalar critic does not have.
//
// --d-scale 0.5 or 0.25 shrinks D's width (PacGAN's Table 3, after Metz et al.: a weaker
// discriminator makes a DCGAN drop far more modes).
//
// Defaults: G and D of width 32, z of 64, G upsampling by nearest 2x + Conv 3x3, batch 64, lr
// 2e-4 falling linearly to 0, Adam (0.5, 0.9) for meg and wgan_gp (their examples') and
// (0.5, 0.999) for gan (DCGAN's); λ = 10, β = 1; MALA 20 + 30 steps on every sample, in
// groups of 1000 chains. The steps are chosen so that each default run takes about 20-25
// minutes with 2 threads on a 2-core AMD EPYC (Zen 3): a step of meg here costs about as
// much as one of meg_mnist (which runs 16 steps/s there), one of wgan_gp as one of
// wgan_gp_mnist (4.3 steps/s), and gan steps 1.5 times as fast as meg's; MALA on the 26 000
// samples costs about 5000 steps of training. Hence meg 15 000 steps (16 epochs; ~16 min of
// training, ~6 of MALA and evaluation), wgan_gp 5000 generator steps (25 000 critic steps;
// ~20 min) and gan 30 000 steps (~21 min). An epoch, for the checkpoints, is as many stacked
// images as MNIST has training images.
//
// Writes to --out: samples.png (a 10x10 grid, the channels as RGB: from fixed noise every
// epoch, at the end the first 100 evaluated samples), samples.npy (the first 1000 of them,
// float32 [N,3,28,28] in [0,1]), for meg samples_mcmc.png / .npy after latent MALA,
// metrics.csv, loss.png, checkpoint.safetensors (every epoch; --resume continues from it bit
// for bit) and summary.json with the mode coverage. `--help` lists the flags.
#include <memory>
#include <optional>

#include <ember/eval/stacked_modes.hpp>

#include "common/conv_gan_steps.hpp"
#include "common/quality.hpp"
#include "common/run.hpp"

namespace {

using Tensor = ember::Tensor<float>;
using ember_examples::ConvGan;

struct Options : ember_examples::ExampleOptions {
    std::string model = "meg";
    std::string d_scale = "1";  // one of the choices of --d-scale, as given
    ember_examples::ConvGanOptions nets{.latent = 64, .width = 32, .upsample_conv = true, .channels = 3};
    ember_examples::MegStepOptions meg;       // β = 1, λ = 10, one U step per G step
    ember_examples::WganGpStepOptions wgan;   // n_critic = 5, λ = 10
    bool lr_decay = true;  // lr falls linearly from --lr to 0 over the run
    std::int64_t mcmc_warmup = 20, mcmc_steps = 30;
};

constexpr ember::Index saved_samples = 1000;  // rows of samples.npy (26 000 would take 245 MB)

// A model of the benchmark: its nets, optimisers and training step, behind one interface so
// that the run around them (data, checkpoints, evaluation) is written once.
class Model {
public:
    virtual ~Model() = default;
    virtual ConvGan& gan() = 0;
    virtual std::vector<std::string> metrics() const = 0;   // what step() returns, in order
    virtual std::vector<std::string> plotted() const = 0;   // the metrics of loss.png
    virtual int batches_per_step() const { return 1; }
    virtual std::string describe() const = 0;               // for the opening line
    virtual void add_to(ember::Checkpoint<float>& c) = 0;
    virtual void set_lr(double lr) = 0;
    virtual std::vector<double> step(const std::function<Tensor()>& next_real, ember::Generator& noise) = 0;
};

class MegModel : public Model {
public:
    MegModel(ember::Generator& init, const Options& o) : m_(init, o.nets, o.lr), o_(o.meg) {}
    ConvGan& gan() override { return m_.gan; }
    std::vector<std::string> metrics() const override { return {"loss_u", "loss_g", "u_real", "u_fake", "r1", "mi"}; }
    std::vector<std::string> plotted() const override { return {"loss_u", "loss_g", "mi"}; }
    int batches_per_step() const override { return o_.energy_steps; }
    std::string describe() const override {
        using ember_examples::Fact;
        return "meg (" + Fact("T parameters", m_.T.net.parameter_count()).text + ", " + Fact("beta", o_.beta).text +
               ", " + Fact("lambda", o_.lambda).text + ", " + Fact("U steps per G step", o_.energy_steps).text + ")";
    }
    void add_to(ember::Checkpoint<float>& c) override {
        c.add("gen", m_.gan.G).add("energy", m_.gan.D).add("stat", m_.T.net);
        c.add("opt_gen", m_.opt_G, m_.gan.G).add("opt_energy", m_.opt_U, m_.gan.D).add("opt_stat", m_.opt_T, m_.T.net);
    }
    void set_lr(double lr) override { m_.set_lr(lr); }
    std::vector<double> step(const std::function<Tensor()>& next_real, ember::Generator& noise) override {
        const ember_examples::MegLosses l = ember_examples::meg_step(m_, o_, next_real, noise);
        return {l.u, l.g, l.u_real, l.u_fake, l.r1, l.mi};
    }
    ember_examples::Meg& meg() { return m_; }

private:
    ember_examples::Meg m_;
    ember_examples::MegStepOptions o_;
};

// G and D with an Adam each: WGAN-GP and the GAN.
class TwoPlayer : public Model {
public:
    TwoPlayer(ember::Generator& init, const Options& o, ember::AdamOptions adam)
        : gan_(init, o.nets), opt_G_(gan_.G.parameters(), adam), opt_D_(gan_.D.parameters(), adam) {}
    ConvGan& gan() override { return gan_; }
    void add_to(ember::Checkpoint<float>& c) override {
        c.add("gen", gan_.G).add("critic", gan_.D).add("opt_gen", opt_G_, gan_.G).add("opt_critic", opt_D_, gan_.D);
    }
    void set_lr(double lr) override { opt_G_.set_lr(lr), opt_D_.set_lr(lr); }

protected:
    ConvGan gan_;
    ember::Adam<float> opt_G_, opt_D_;
};

class WganGpModel : public TwoPlayer {
public:
    WganGpModel(ember::Generator& init, const Options& o)
        : TwoPlayer(init, o, {.lr = o.lr, .betas = {0.5, 0.9}}), o_(o.wgan) {}
    std::vector<std::string> metrics() const override { return {"wasserstein", "gp", "loss_critic", "loss_g"}; }
    std::vector<std::string> plotted() const override { return {"loss_critic", "gp", "loss_g"}; }
    int batches_per_step() const override { return o_.n_critic; }
    std::string describe() const override {
        using ember_examples::Fact;
        return "wgan_gp (" + Fact("n_critic", o_.n_critic).text + ", " + Fact("lambda", o_.lambda).text + ")";
    }
    std::vector<double> step(const std::function<Tensor()>& next_real, ember::Generator& noise) override {
        const ember_examples::WganLosses l = ember_examples::wgan_gp_step(gan_, opt_G_, opt_D_, o_, next_real, noise);
        return {l.wasserstein, l.gp, l.critic, l.g};
    }

private:
    ember_examples::WganGpStepOptions o_;
};

class DcganModel : public TwoPlayer {
public:
    DcganModel(ember::Generator& init, const Options& o) : TwoPlayer(init, o, {.lr = o.lr, .betas = {0.5, 0.999}}) {}
    std::vector<std::string> metrics() const override { return {"loss_d", "loss_g", "d_real", "d_fake"}; }
    std::vector<std::string> plotted() const override { return {"loss_d", "loss_g"}; }
    std::string describe() const override { return "gan (non-saturating)"; }
    std::vector<double> step(const std::function<Tensor()>& next_real, ember::Generator& noise) override {
        const ember_examples::DcganLosses l = ember_examples::dcgan_step(gan_, opt_G_, opt_D_, next_real, noise);
        return {l.d, l.g, l.d_real, l.d_fake};
    }
};

std::unique_ptr<Model> make_model(ember::Generator& init, const Options& o) {
    if (o.model == "meg") return std::make_unique<MegModel>(init, o);
    if (o.model == "wgan_gp") return std::make_unique<WganGpModel>(init, o);
    return std::make_unique<DcganModel>(init, o);
}

// The mode coverage of samples01 [N,3,28,28] in [0,1]: the classifier reads each channel as a
// digit. Prints one line "<name>: <label>: ..." and keeps the numbers for the summary (a
// label other than "samples" prefixes their names); without a classifier, says how to get one.
void report_modes(ember_examples::TrainingRun& run, const Tensor& samples01, const std::string& label) {
    const ember_examples::ExampleOptions& o = run.options;
    const std::optional<std::string> path = ember_examples::find_classifier(o, "modes");
    if (!path) return;
    ember::Generator init(0);
    ember_examples::MnistClassifier net(init);
    ember_examples::load_classifier(net, *path);
    const ember::Index n = samples01.dim(0);
    const Tensor channels = ember_examples::as_unit_images(samples01.contiguous().reshape(ember::Shape{3 * n, 784}), label);
    const Tensor logits = ember_examples::classify(net, channels).logits;
    const ember::StackedModes m = ember::stacked_modes(ember::softmax_rows(logits).reshape(ember::Shape{n, 3, 10}));
    std::printf("%s: %s: %lld samples hit %lld of 1000 modes (%lld with all three digits read confidently, by %.3f of "
                "the samples), KL to uniform %.4f (classifier %s)\n",
                o.name.c_str(), label.c_str(), static_cast<long long>(n), static_cast<long long>(m.modes_any),
                static_cast<long long>(m.modes), m.confident_share, m.kl, path->c_str());
    std::fflush(stdout);
    const std::string prefix = label == "samples" ? "" : label + ": ";
    run.result(prefix + "modes", static_cast<double>(m.modes_any));
    run.result(prefix + "confident modes", static_cast<double>(m.modes));
    run.result(prefix + "KL to uniform", m.kl);
    run.result(prefix + "confident share", m.confident_share);
}

int train(Options& o) {
    o.nets.d_scale = std::stod(o.d_scale);
    const ember::ImageSet mnist = ember_examples::load_images(o, true);
    const ember::ImageSet digits{ember::scale_to_symmetric(mnist.images), mnist.labels};  // [-1, 1], as G's Tanh
    ember::Generator init(o.seed), noise(o.seed + 1), data(o.seed + 5);  // data: the digits of every real image
    const std::unique_ptr<Model> model = make_model(init, o);
    ConvGan& gan = model->gan();

    // An epoch: the whole steps that fit in as many real images as MNIST has.
    const std::int64_t per_step = model->batches_per_step();
    const std::int64_t steps_per_epoch = std::max<std::int64_t>(1, mnist.images.dim(0) / o.batch / per_step);
    ember_examples::TrainingRun run(o, {.batches_per_epoch = steps_per_epoch * per_step, .batches_per_step = per_step});
    run.same_on_resume("--model", o.model).same_on_resume("--d-scale", o.d_scale);
    const Tensor z_fixed = ember_examples::fixed_noise(100, o.nets.latent, o.seed + 2);  // every picture's z
    model->add_to(run.checkpoint);
    run.checkpoint.add("noise", noise).add("data", data).add("step", run.step);
    ember_examples::MetricsWindow<> window(run, model->metrics());
    run.start({{"stacked 3 x 28 x 28 images from", mnist.images.dim(0)}, {"model", model->describe()},
               {"G parameters", gan.G.parameter_count()}, {"D parameters", gan.D.parameter_count()},
               {"latent", o.nets.latent}, {"width", o.nets.width}, {"D width scale", o.nets.d_scale}});

    auto save_pictures = [&] {
        ember::save_image_grid(run.out / "samples.png", gan.sample01(z_fixed), 10, 0.0, 1.0);
        ember::save_metrics_plot(run.out / "metrics.csv", run.out / "loss.png", model->plotted());
    };
    while (run.running()) {
        if (o.lr_decay) model->set_lr(ember_examples::linearly_decayed_lr(o.lr, run.step, run.total));
        const auto next_real = [&] { return ember::draw_stacked(digits, o.batch, data).images; };
        window.add(run.finish_step(), model->step(next_real, noise));
        if (run.epoch_done()) run.save_checkpoint(), save_pictures();
    }

    const Tensor z0 = ember_examples::fixed_noise(o.n_samples, o.nets.latent, o.seed + 3);
    const Tensor samples01 = gan.sample01(z0);
    const ember::Index kept = std::min(o.n_samples, saved_samples);
    ember_examples::write_samples(run.out, samples01.slice(0, 0, kept).contiguous());
    report_modes(run, samples01, "samples");
    if (auto* meg = dynamic_cast<MegModel*>(model.get())) {  // latent MALA from the same z, as meg_mnist
        const ember_examples::LatentMala mcmc =
            ember_examples::meg_latent_mala(meg->meg(), z0, o.mcmc_warmup, o.mcmc_steps, o.seed + 4);
        const Tensor mcmc01 = gan.sample01(mcmc.z);
        ember_examples::write_samples(run.out, mcmc01.slice(0, 0, kept).contiguous(), "samples_mcmc.png",
                                      "samples_mcmc.npy");
        ember_examples::print_latent_mala(o.name.c_str(), mcmc);
        run.result("MALA acceptance", mcmc.run.acceptance_rate);
        report_modes(run, mcmc01, "after MALA");
    }
    return run.finish(window);
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    o.name = "stacked_mnist", o.batch = 64, o.lr = 2e-4, o.n_samples = 26000;
    ember_examples::Flags flags("stacked_mnist: mode collapse on StackedMNIST, 1000 modes (Lin et al. 2018)", o);
    using ember_examples::Check;
    flags.choice("--model", o.model, {"meg", "wgan_gp", "gan"}, "the training: MEG, WGAN-GP or the non-saturating GAN")
        .choice("--d-scale", o.d_scale, {"1", "0.5", "0.25"}, "D's width as a share of G's (PacGAN's Table 3: 0.25)")
        .add("--latent", o.nets.latent, "dimension of z", Check::positive)
        .add("--width", o.nets.width, "channels of G's last convolution (and, times --d-scale, D's first)",
             Check::positive)
        .add("--upsample-conv", o.nets.upsample_conv, "G upsamples by nearest 2x + Conv 3x3 (1) or ConvTranspose (0)")
        .add("--lr-decay", o.lr_decay, "decay the lr linearly to 0 over the run (1) or keep it constant (0)")
        .add("--beta", o.meg.beta, "meg: weight β of the entropy term -β I_JSD(G(z); z) in L_G", Check::non_negative)
        .add("--lambda", o.meg.lambda, "meg: weight λ of the R1 penalty; wgan_gp: of the gradient penalty",
             Check::non_negative)
        .add("--energy-steps", o.meg.energy_steps, "meg: energy steps per generator step", Check::positive)
        .add("--n-critic", o.wgan.n_critic, "wgan_gp: critic steps per generator step", Check::positive)
        .add("--mcmc-warmup", o.mcmc_warmup, "meg: latent MALA warm-up steps (step size adapted)", Check::non_negative)
        .add("--mcmc-steps", o.mcmc_steps, "meg: latent MALA steps after warm-up (step size fixed)", Check::non_negative)
        .quick_default("--mcmc-warmup", o.mcmc_warmup, std::int64_t{5})
        .quick_default("--mcmc-steps", o.mcmc_steps, std::int64_t{5});
    return flags.run(argc, argv, {.iters = 40, .samples = 200}, [&] {
        o.wgan.lambda = o.meg.lambda;  // --lambda weighs whichever penalty the model has
        // Each model's default run takes about 25 minutes (see the file comment).
        if (!flags.given("--iters") && !flags.given("--epochs") && !o.quick)
            o.iters = o.model == "meg" ? 15000 : o.model == "wgan_gp" ? 5000 : 30000;
        return train(o);
    });
}
