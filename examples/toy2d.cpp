// toy2d: the seeds' generative models on ember's built-in 2-D distributions, with the
// mode-collapse metrics of the literature on the 25-Gaussian grid and the 8-Gaussian ring.
//
//   toy2d --model {gan,wgan_gp,meg,ebgan,fgan:<div>,ebm_sgld}
//         --dist {grid25,ring8,swiss_roll,two_moons,rings,checkerboard}
//         [--iters N] [--batch N] [--lr X] [--seed N] [--threads N] [--n-samples N]
//         [--out DIR] [--resume] [--quick]   (and each model's own flags, see --help)
//
// Data: fresh samples of the target every step (data/toy2d.hpp), so there is no epoch.
// Networks: MLPs with 3 hidden layers of --hidden units, generator z ~ N(0, I_2) -> R² with
// ReLU, critics and energies with LeakyReLU(0.2) (the WGAN-GP and MEG toy code's
// architecture); Adam with betas 0.5 / 0.9 as in both reference codes. Those codes use 512
// units, lr 1e-4 and 100k iterations on a GPU; to keep a default run within a few minutes
// on 2 CPU cores this file uses 128 units, lr 1e-3 decaying linearly to 5e-5, batch 256,
// and 5000 iterations (gan, ebgan, fgan), 14000 (wgan_gp, meg: each has 5 critic/energy
// steps; WGAN-GP passes 90% high-quality samples on the grid at about 10k) or 1500
// (ebm_sgld: 20 SGLD steps each). Every objective comes from the library;
// one iteration is:
//
//   gan       (Goodfellow et al. 2014) D step: E sp(-D(x)) + E sp(D(G(z)))  [gan::discriminator_loss]
//             G step: E sp(-D(G(z)))  (non-saturating)  [gan::generator_loss_nonsaturating]
//   wgan_gp   (Gulrajani et al. 2017) --n-critic critic steps on
//             E D(G(z)) - E D(x) + λ E (||∇D(x̂)|| - 1)²  [gan::wasserstein_critic_loss,
//             energy::wgan_gp_penalty], then G step: -E D(G(z)). λ = 0.1 as in the paper's
//             toy experiments.
//   meg       (Kumar et al. 2019; docs/math.md §1-2) --n-critic energy steps on
//             L_U = E U(x) - E U(G(z)) + λ E ||∇_x U(x)||²  [energy::contrastive_loss,
//             energy::r1_penalty; λ = 0.1 as in the MEG toy code], then one step of the
//             generator and the statistics network T(x, z) on
//             L_G = E U(G(z)) - β Î_JSD(G(z); z)  [info::meg_generator_loss, info::jsd],
//             joint pairs (G(z_i), z_i), marginal pairs (G(z_i), z_π(i)) with π a
//             derangement [info::shuffled_pairs]. T descends L_G too, i.e. it ascends
//             β Î_JSD: the estimator's own objective (as the reference code does).
//             β = 0.1 (--beta). With --mcmc-warmup/--mcmc-steps the final samples are
//             refined by MALA in latent space on U(G(z)) + ½||z||² [sample::latent_energy,
//             sample::Mala], as Kumar et al. sample; the metrics of G(z) before it are printed too.
//   ebgan     (Zhao et al. 2017; docs/math.md §3) auto-encoder energy
//             D(x) = ||Dec(Enc(x)) - x||² / 2 (per coordinate mean) [energy::autoencoder_energy];
//             D step: E D(x) + E [m - D(G(z))]_+  [energy::ebgan_discriminator_loss];
//             G step: E D(G(z)) + λ_PT f_PT(Enc(G(z)))  [energy::ebgan_generator_loss].
//   fgan:DIV  (Nowozin et al. 2016; docs/math.md §4) T step: -(E g_f(T(x)) - E f*(g_f(T(G(z)))))
//             [fdiv::critic_loss]; G step: -E g_f(T(G(z))), the paper's alternative
//             generator loss [fdiv::generator_loss_alt]. DIV: kl reverse_kl pearson neyman
//             hellinger js gan tv.
//   ebm_sgld  (IGEBM, Du & Mordatch 2019; JEM; docs/math.md §1, §7) a pure energy model: a batch
//             of chains from a replay buffer (5% re-initialised uniformly over the plot
//             box) takes --sgld-steps SGLD steps x ← x - α∇U(x) + σξ [sample::sgld,
//             sample::ReplayBuffer] and is pushed back; the energy step is
//             L = E U(x) - E U(x̃) + α_m E[U(x)² + U(x̃)²]  [energy::contrastive_loss,
//             energy::magnitude_penalty]. Samples: buffer states refined by
//             --final-sgld-steps more SGLD steps.
//
// Metrics (grid25, ring8; ember/eval/mode_coverage.hpp): of --n-samples samples (2500),
// each is assigned to its nearest mode and is high-quality if within 3 standard
// deviations of it; modes covered = modes with at least one high-quality sample; share of
// high-quality samples; reverse KL KL(q || uniform) of the histogram q of the
// high-quality samples over the modes (empty modes contribute 0). Logged every
// --eval-every iterations and at the end, printed at the end.
//
// Writes to --out: samples.png (target | model samples, the modes marked "+"; energy
// models add a third panel, the learned -U(x) on a grid), samples.npy (float32 [N, 2]),
// metrics.csv, loss.png, checkpoint.safetensors (every --ckpt-every iterations and at the
// end; --resume continues from it bit for bit, including the replay buffer).

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ember/ember.hpp>
#include <ember/eval/mode_coverage.hpp>
#include <filesystem>
#include <memory>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include "common/example.hpp"
#include "common/flags.hpp"
#include "common/latent_mala.hpp"
#include "common/run.hpp"

namespace fs = std::filesystem;
using ember::Generator;
using ember::Index;
using Tensor = ember::Tensor<float>;
using Var = ember::Var<float>;
namespace nn = ember::nn;

namespace {

using Values = std::vector<std::pair<std::string, double>>;

struct ToyOptions {
    std::string model = "meg", dist = "grid25";
    Index latent = 2, hidden = 128;
    int n_critic = 5;            // critic/energy steps per generator step (wgan_gp, meg)
    double gp = 0.1;             // λ of the WGAN-GP penalty (wgan_gp) or of the R1 penalty (meg)
    // meg: weight of the entropy (MI) term. U's scale is set by its contrastive loss and
    // penalty, not by normalisation, so β acts as a temperature: at 1 the generator kept a
    // quarter of its samples between the grid's modes (76.8% high-quality), at 0.3 91.5%,
    // at 0.1 94.9% (seed 0, 14000 iterations; docs/results.md).
    double beta = 0.1;
    double margin = 1.0;         // ebgan: m
    double pt_weight = 0.1;      // ebgan: λ_PT
    int sgld_steps = 20, final_sgld_steps = 200;
    double sgld_step = 1e-3, sgld_noise = 0.0;  // noise 0: √(2α), Langevin proper
    Index buffer = 10000;
    double magnitude = 0.1;      // ebm_sgld: α_m
    // meg: latent MALA on U(G(z)) + ½||z||² refining the final samples. Off by default:
    // U's wells differ in depth, so the chains move mass between modes (reverse KL 0.0035
    // -> 0.087 at β = 0.1) while gaining almost no precision (94.9% -> 95.0%).
    std::int64_t mcmc_warmup = 0, mcmc_steps = 0;
    std::int64_t log_every = 50, eval_every = 1000, ckpt_every = 1000;
    // The lr decays linearly from --lr to --lr · decay_floor over decay_iters iterations
    // (then stays there). A horizon of its own, not --iters, so that a run stopped and
    // resumed with a larger --iters takes exactly the steps of an uninterrupted one.
    std::int64_t decay_iters = 0;  // 0: the model's default number of iterations
    double decay_floor = 0.05;
};

// The box each distribution is drawn in (and ebm_sgld's chains start in).
ember::AxisRange box_of(ember::Toy2d kind) {
    switch (kind) {
        case ember::Toy2d::grid25: return {-5.5, 5.5};
        case ember::Toy2d::ring8: return {-3, 3};
        case ember::Toy2d::swiss_roll: return {-3.5, 3.5};
        case ember::Toy2d::two_moons: return {-1.75, 2.75};
        case ember::Toy2d::rings: return {-3.5, 3.5};
        case ember::Toy2d::checkerboard: return {-4.5, 4.5};
    }
    return {-5, 5};
}

std::optional<ember::ToyModes> modes_of(ember::Toy2d kind) {
    if (kind == ember::Toy2d::grid25) return ember::grid25_modes();
    if (kind == ember::Toy2d::ring8) return ember::ring8_modes();
    return std::nullopt;
}

// in -> hidden -> hidden -> hidden -> out.
void mlp(nn::Sequential<float>& net, Index in, Index hidden, Index out, Generator& init, bool leaky) {
    Index d = in;
    for (int l = 0; l < 3; ++l) {
        net.add<nn::Linear>(d, hidden, init);
        if (leaky) net.add<nn::LeakyReLU>(0.2);
        else net.add<nn::ReLU>();
        d = hidden;
    }
    net.add<nn::Linear>(d, out, init);
}

std::unique_ptr<ember::Adam<float>> adam(nn::Module<float>& m, double lr) {
    return std::make_unique<ember::Adam<float>>(m.parameters(), ember::AdamOptions{.lr = lr, .betas = {0.5, 0.9}});
}

// What every model draws from: target batches and noise, each from its own generator (all
// checkpointed, so a resumed run draws the same numbers).
struct Context {
    ember::Toy2d kind;
    Index batch, latent;
    Generator data, noise, aux;  // aux: penalties' ε, derangements, SGLD noise, buffer slots
    Tensor real() { return ember::sample_toy2d<float>(kind, batch, data); }
    Tensor z() { return ember::normal<float>(ember::Shape{batch, latent}, noise); }
};

class ToyModel {
public:
    virtual ~ToyModel() = default;
    virtual Values step(Context& c) = 0;                         // one training iteration
    virtual Tensor sample(Index n, Generator& gen) = 0;          // model samples [n, 2]
    virtual Tensor final_sample(Index n, Generator& gen) { return sample(n, gen); }
    // What final_sample() started from, when it refines samples by MCMC.
    virtual std::optional<Tensor> before_refinement() const { return std::nullopt; }
    virtual std::optional<Tensor> energy(const Tensor&) { return std::nullopt; }  // U at points
    // The energy of the model's density exp(-U)/Z, for a model that is one (ebm_sgld).
    virtual ember::sample::EnergyFn<float> density_energy() { return {}; }
    virtual void checkpoint(ember::Checkpoint<float>& ck) = 0;
    virtual std::vector<std::string> losses() const = 0;
    virtual Index parameters() const = 0;
    virtual void set_lr(double lr) = 0;  // of every optimiser
};

// A generator z -> G(z) in R², shared by every model but ebm_sgld.
class WithGenerator : public ToyModel {
public:
    WithGenerator(const ToyOptions& t, Generator& init, double lr) : latent_(t.latent) {
        mlp(G, t.latent, t.hidden, 2, init, false);
        opt_G = adam(G, lr);
    }
    Tensor sample(Index n, Generator& gen) override { return generate(ember::normal<float>(ember::Shape{n, latent_}, gen)); }
    // One optimiser step on `loss` for the optimisers given, with `frozen` not differentiated.
    static void descend(const Var& loss, std::initializer_list<ember::Adam<float>*> opts,
                        std::initializer_list<nn::Module<float>*> frozen = {}) {
        for (auto* m : frozen) m->requires_grad(false);
        for (auto* o : opts) o->zero_grad();
        ember::backward(loss);
        for (auto* o : opts) o->step();
        for (auto* m : frozen) m->requires_grad(true);
    }
    nn::Sequential<float> G;
    std::unique_ptr<ember::Adam<float>> opt_G;

protected:
    // G(z) without a graph: negatives and fakes that no gradient may reach G through.
    Tensor generate(const Tensor& z) {
        ember::NoGrad no_grad;
        return G(Var(z)).value();
    }
    Index latent_;
};

// ---- gan ------------------------------------------------------------------------------
class Gan : public WithGenerator {
public:
    Gan(const ToyOptions& t, Generator& init, double lr) : WithGenerator(t, init, lr) {
        mlp(D, 2, t.hidden, 1, init, true);
        opt_D = adam(D, lr);
    }
    Values step(Context& c) override {
        const Var fake = G(Var(c.z()));
        const Var loss_d = ember::gan::discriminator_loss(D(Var(c.real())), D(fake.detach()));
        descend(loss_d, {opt_D.get()});
        const Var loss_g = ember::gan::generator_loss_nonsaturating(D(fake));  // through the updated D
        descend(loss_g, {opt_G.get()}, {&D});
        return {{"loss_d", loss_d.item()}, {"loss_g", loss_g.item()}};
    }
    void checkpoint(ember::Checkpoint<float>& ck) override {
        ck.add("gen", G).add("disc", D).add("opt_gen", *opt_G, G).add("opt_disc", *opt_D, D);
    }
    std::vector<std::string> losses() const override { return {"loss_d", "loss_g"}; }
    Index parameters() const override { return G.parameter_count() + D.parameter_count(); }
    void set_lr(double lr) override { opt_G->set_lr(lr), opt_D->set_lr(lr); }
    nn::Sequential<float> D;
    std::unique_ptr<ember::Adam<float>> opt_D;
};

// ---- wgan_gp --------------------------------------------------------------------------
class WganGp : public WithGenerator {
public:
    WganGp(const ToyOptions& t, Generator& init, double lr) : WithGenerator(t, init, lr), t_(t) {
        mlp(D, 2, t.hidden, 1, init, true);
        opt_D = adam(D, lr);
    }
    Values step(Context& c) override {
        double w = 0, gp = 0;
        for (int k = 0; k < t_.n_critic; ++k) {
            const Var x(c.real());
            const Var fake(generate(c.z()));
            const Var d_real = D(x), d_fake = D(fake);
            const Var penalty = ember::energy::wgan_gp_penalty(D, x, fake, c.aux, t_.gp);
            descend(Var(ember::gan::wasserstein_critic_loss(d_real, d_fake) + penalty), {opt_D.get()});
            w += Var(ember::mean(d_real) - ember::mean(d_fake)).item() / t_.n_critic;
            gp += penalty.item() / t_.n_critic;
        }
        const Var loss_g = ember::gan::wasserstein_generator_loss(D(G(Var(c.z()))));
        descend(loss_g, {opt_G.get()}, {&D});
        return {{"wasserstein", w}, {"penalty", gp}, {"loss_g", loss_g.item()}};
    }
    void checkpoint(ember::Checkpoint<float>& ck) override {
        ck.add("gen", G).add("critic", D).add("opt_gen", *opt_G, G).add("opt_critic", *opt_D, D);
    }
    std::vector<std::string> losses() const override { return {"wasserstein", "penalty", "loss_g"}; }
    Index parameters() const override { return G.parameter_count() + D.parameter_count(); }
    void set_lr(double lr) override { opt_G->set_lr(lr), opt_D->set_lr(lr); }
    nn::Sequential<float> D;
    std::unique_ptr<ember::Adam<float>> opt_D;

private:
    ToyOptions t_;
};

// ---- meg ------------------------------------------------------------------------------
class Meg : public WithGenerator {
public:
    Meg(const ToyOptions& t, Generator& init, double lr) : WithGenerator(t, init, lr), t_(t) {
        mlp(U, 2, t.hidden, 1, init, true);
        mlp(T, 2 + t.latent, t.hidden, 1, init, true);  // T(x, z) on the concatenation [x, z]
        opt_U = adam(U, lr);
        opt_T = adam(T, lr);
    }
    Values step(Context& c) override {
        // The energy: data down, the generator's samples (its approximate negatives) up,
        // flat at the data (zero-centred penalty).
        double l_u = 0, r1 = 0;
        for (int k = 0; k < t_.n_critic; ++k) {
            const Var x(c.real());
            const Var neg(generate(c.z()));
            const Var penalty = ember::energy::r1_penalty(U, x, t_.gp);
            const Var loss = ember::energy::contrastive_loss(U, x, neg);
            descend(Var(loss + penalty), {opt_U.get()});
            l_u += loss.item() / t_.n_critic;
            r1 += penalty.item() / t_.n_critic;
        }
        // The generator: low energy and high entropy, H(G(z)) ~ I(G(z); z), estimated by T.
        const Var z(c.z());
        const Var x = G(z);
        const auto marg = ember::info::shuffled_pairs(x, z, c.aux);
        const Var mi = ember::info::jsd(T(ember::concat<float>({x, z}, 1)), T(ember::concat<float>({marg.x, marg.z}, 1)));
        const Var u = U(x);
        const Var loss_g = ember::info::meg_generator_loss(u, mi, t_.beta);
        descend(loss_g, {opt_G.get(), opt_T.get()}, {&U});
        return {{"loss_u", l_u}, {"r1", r1}, {"energy_g", ember::mean(u).item()}, {"mi_jsd", mi.item()}};
    }
    std::optional<Tensor> energy(const Tensor& x) override {
        ember::NoGrad no_grad;
        return U(Var(x)).value();
    }
    // Kumar et al.'s sampler: G(z) is only the starting point; MALA in latent space on
    // U_z(z) = U(G(z)) + ½||z||² moves each z toward the energy's wells, whose stationary
    // law is ∝ exp(-U(x)) pushed through G with the prior N(0, I).
    Tensor final_sample(Index n, Generator& gen) override {
        const Tensor z0 = ember::normal<float>(ember::Shape{n, latent_}, gen);
        const Tensor plain = generate(z0);
        if (t_.mcmc_warmup + t_.mcmc_steps == 0) return plain;
        before_mcmc_ = plain;
        G.requires_grad(false);  // only ∇_z is needed
        U.requires_grad(false);
        const ember_examples::LatentMala mcmc = ember_examples::latent_mala(
            [this](const Var& z) { return G(z); }, [this](const Var& x) { return U(x); }, z0, t_.mcmc_warmup,
            t_.mcmc_steps, gen.seed() + 1);
        G.requires_grad(true);
        U.requires_grad(true);
        ember_examples::print_latent_mala("toy2d", mcmc);
        return generate(mcmc.z);
    }
    std::optional<Tensor> before_refinement() const override { return before_mcmc_; }
    void checkpoint(ember::Checkpoint<float>& ck) override {
        ck.add("gen", G).add("energy", U).add("stat", T);
        ck.add("opt_gen", *opt_G, G).add("opt_energy", *opt_U, U).add("opt_stat", *opt_T, T);
    }
    std::vector<std::string> losses() const override { return {"loss_u", "r1", "energy_g", "mi_jsd"}; }
    Index parameters() const override { return G.parameter_count() + U.parameter_count() + T.parameter_count(); }
    void set_lr(double lr) override { opt_G->set_lr(lr), opt_U->set_lr(lr), opt_T->set_lr(lr); }
    nn::Sequential<float> U, T;
    std::unique_ptr<ember::Adam<float>> opt_U, opt_T;

private:
    ToyOptions t_;
    std::optional<Tensor> before_mcmc_;  // the final G(z), before MALA
};

// ---- ebgan ----------------------------------------------------------------------------
// The auto-encoder discriminator: Enc 2 -> h -> h -> h -> code, Dec code -> h -> h -> h -> 2.
class AutoEncoder : public nn::Module<float> {
public:
    AutoEncoder(Index hidden, Index code, Generator& init)
        : enc(std::make_shared<nn::Sequential<float>>()), dec(std::make_shared<nn::Sequential<float>>()) {
        mlp(*enc, 2, hidden, code, init, true);
        mlp(*dec, code, hidden, 2, init, true);
        register_module("enc", enc);
        register_module("dec", dec);
    }
    Var forward(const Var& x) override { return (*dec)((*enc)(x)); }
    std::string describe() const override { return "AutoEncoder"; }
    std::shared_ptr<nn::Sequential<float>> enc, dec;
};

class Ebgan : public WithGenerator {
public:
    Ebgan(const ToyOptions& t, Generator& init, double lr) : WithGenerator(t, init, lr), D(t.hidden, 32, init), t_(t) {
        opt_D = adam(D, lr);
    }
    Values step(Context& c) override {
        const Var x(c.real());
        const Var fake = G(Var(c.z()));
        const Var fd = fake.detach();
        const Var d_real = ember::energy::autoencoder_energy(x, D(x));
        const Var d_fake = ember::energy::autoencoder_energy(fd, D(fd));
        const Var loss_d = ember::energy::ebgan_discriminator_loss(d_real, d_fake, t_.margin);
        descend(loss_d, {opt_D.get()});
        const Var codes = (*D.enc)(fake);
        const Var d_gen = ember::energy::autoencoder_energy(fake, (*D.dec)(codes));
        const Var loss_g = ember::energy::ebgan_generator_loss(d_gen, codes, t_.pt_weight);
        descend(loss_g, {opt_G.get()}, {&D});
        return {{"loss_d", loss_d.item()}, {"loss_g", loss_g.item()}, {"d_real", ember::mean(d_real).item()},
                {"d_fake", ember::mean(d_fake).item()}};
    }
    std::optional<Tensor> energy(const Tensor& x) override {
        ember::NoGrad no_grad;
        const Var v(x);
        return ember::energy::autoencoder_energy(v, D(v)).value();
    }
    void checkpoint(ember::Checkpoint<float>& ck) override {
        ck.add("gen", G).add("disc", D).add("opt_gen", *opt_G, G).add("opt_disc", *opt_D, D);
    }
    std::vector<std::string> losses() const override { return {"loss_d", "loss_g", "d_real", "d_fake"}; }
    Index parameters() const override { return G.parameter_count() + D.parameter_count(); }
    void set_lr(double lr) override { opt_G->set_lr(lr), opt_D->set_lr(lr); }
    AutoEncoder D;
    std::unique_ptr<ember::Adam<float>> opt_D;

private:
    ToyOptions t_;
};

// ---- fgan:<div> -----------------------------------------------------------------------
template <class Div>
class FGan : public WithGenerator {
public:
    FGan(const ToyOptions& t, Generator& init, double lr) : WithGenerator(t, init, lr) {
        mlp(T, 2, t.hidden, 1, init, true);
        opt_T = adam(T, lr);
    }
    Values step(Context& c) override {
        const Var fake = G(Var(c.z()));
        const Var loss_t = ember::fdiv::critic_loss<Div>(T(Var(c.real())), T(fake.detach()));
        descend(loss_t, {opt_T.get()});
        const Var loss_g = ember::fdiv::generator_loss_alt<Div>(T(fake));
        descend(loss_g, {opt_G.get()}, {&T});
        // -loss_t is the variational estimate of D_f(P || Q) on this batch.
        return {{"divergence", -loss_t.item()}, {"loss_g", loss_g.item()}};
    }
    void checkpoint(ember::Checkpoint<float>& ck) override {
        ck.add("gen", G).add("critic", T).add("opt_gen", *opt_G, G).add("opt_critic", *opt_T, T);
    }
    std::vector<std::string> losses() const override { return {"divergence", "loss_g"}; }
    Index parameters() const override { return G.parameter_count() + T.parameter_count(); }
    void set_lr(double lr) override { opt_G->set_lr(lr), opt_T->set_lr(lr); }
    nn::Sequential<float> T;
    std::unique_ptr<ember::Adam<float>> opt_T;
};

// ---- ebm_sgld -------------------------------------------------------------------------
// A tensor as a module buffer, so that Checkpoint stores it (the replay buffer's states:
// the handle shares their storage, and loading writes into it in place).
class StateTensor : public nn::Module<float> {
public:
    explicit StateTensor(const Tensor& t) { register_buffer("states", t); }
    Var forward(const Var& x) override { return x; }
    std::string describe() const override { return "StateTensor"; }
};

class EbmSgld : public ToyModel {
public:
    EbmSgld(const ToyOptions& t, Generator& init, Generator& buffer_gen, double lr, ember::AxisRange box)
        : t_(t),
          buffer_(t.buffer,
                  [box](Index n, Generator& g) { return ember::uniform<float>(ember::Shape{n, 2}, g, static_cast<float>(box.lo), static_cast<float>(box.hi)); },
                  buffer_gen, 0.05),
          states_(buffer_.states()) {
        // SiLU: a smooth energy, so that its gradient (what the chains follow) is continuous.
        Index d = 2;
        for (int l = 0; l < 3; ++l) {
            U.add<nn::Linear>(d, t.hidden, init);
            U.add<nn::SiLU>();
            d = t.hidden;
        }
        U.add<nn::Linear>(d, 1, init);
        opt_U = adam(U, lr);
        sgld_.step_size = t.sgld_step;
        sgld_.noise = t.sgld_noise > 0 ? t.sgld_noise : std::sqrt(2 * t.sgld_step);
        sgld_.steps = t.sgld_steps;
    }
    Values step(Context& c) override {
        auto batch = buffer_.sample(c.batch, c.aux);
        ember::sample::SgldStats stats;
        const Tensor neg = ember::sample::sgld(energy_fn(), batch.states, sgld_, c.aux, &stats);
        buffer_.push(batch.indices, neg);
        const Var u_pos = U(Var(c.real())), u_neg = U(Var(neg));
        const Var loss = ember::energy::contrastive_loss(u_pos, u_neg);
        const Var mag = ember::energy::magnitude_penalty(u_pos, u_neg, t_.magnitude);
        opt_U->zero_grad();
        ember::backward(Var(loss + mag));
        opt_U->step();
        return {{"loss_u", loss.item()}, {"magnitude", mag.item()}, {"u_data", ember::mean(u_pos).item()},
                {"u_chains", ember::mean(u_neg).item()}};
    }
    // The chains as they are (the first n slots of the buffer): cheap, for periodic metrics.
    Tensor sample(Index n, Generator&) override {
        return buffer_.states().slice(0, 0, std::min(n, buffer_.capacity())).contiguous().clone();
    }
    // The same chains refined by --final-sgld-steps more steps.
    Tensor final_sample(Index n, Generator& gen) override {
        ember::sample::SgldOptions o = sgld_;
        o.steps = t_.final_sgld_steps;
        return ember::sample::sgld(energy_fn(), sample(n, gen), o, gen);
    }
    std::optional<Tensor> energy(const Tensor& x) override {
        ember::NoGrad no_grad;
        return U(Var(x)).value();
    }
    void checkpoint(ember::Checkpoint<float>& ck) override {
        ck.add("energy", U).add("opt_energy", *opt_U, U).add("replay", states_);
    }
    ember::sample::EnergyFn<float> density_energy() override { return energy_fn(); }
    std::vector<std::string> losses() const override { return {"loss_u", "magnitude", "u_data", "u_chains"}; }
    Index parameters() const override { return U.parameter_count(); }
    void set_lr(double lr) override { opt_U->set_lr(lr); }
    nn::Sequential<float> U;
    std::unique_ptr<ember::Adam<float>> opt_U;

private:
    ember::sample::EnergyFn<float> energy_fn() {
        return [this](const Var& x) { return U(x); };
    }
    ToyOptions t_;
    ember::sample::ReplayBuffer<float> buffer_;
    StateTensor states_;
    ember::sample::SgldOptions sgld_;
};

std::unique_ptr<ToyModel> make_model(const ToyOptions& t, Generator& init, Generator& buffer_gen, double lr,
                                     ember::AxisRange box) {
    if (t.model == "gan") return std::make_unique<Gan>(t, init, lr);
    if (t.model == "wgan_gp") return std::make_unique<WganGp>(t, init, lr);
    if (t.model == "meg") return std::make_unique<Meg>(t, init, lr);
    if (t.model == "ebgan") return std::make_unique<Ebgan>(t, init, lr);
    if (t.model == "ebm_sgld") return std::make_unique<EbmSgld>(t, init, buffer_gen, lr, box);
    if (t.model.starts_with("fgan:")) {
        const auto div = ember::fdiv::parse_divergence(t.model.substr(5));
        return ember::fdiv::visit_divergence(div, [&]<class D>(D) -> std::unique_ptr<ToyModel> {
            return std::make_unique<FGan<D>>(t, init, lr);
        });
    }
    throw ember::Error("unknown --model '" + t.model + "'; expected gan, wgan_gp, meg, ebgan, ebm_sgld or fgan:<div> with <div> one of kl, reverse_kl, pearson, neyman, hellinger, js, gan, tv");
}

// The test log-likelihood of an energy model q = exp(-U)/Z on box² (U = +inf outside, where
// q is not normalisable), with log Z by annealed importance sampling, beside the true
// density's where it is known (the Gaussian mixtures).
void report_test_log_likelihood(const ember::sample::EnergyFn<float>& U, ember::Toy2d kind, ember::AxisRange box,
                                const std::optional<ember::ToyModes>& modes, const ember_examples::ExampleOptions& o,
                                ember_examples::RunSummary& summary) {
    auto on_box = [&U, box](const Var& x) {
        Tensor wall = Tensor::zeros({x.dim(0)});
        for (Index i = 0; i < x.dim(0); ++i) {
            const float a = x.value().at({i, 0}), b = x.value().at({i, 1});
            if (a < box.lo || a > box.hi || b < box.lo || b > box.hi) wall.data()[i] = INFINITY;
        }
        return Var(ember::reshape(U(x), {x.dim(0)}) + Var(wall));
    };
    const double half_width = (box.hi - box.lo) / 2;
    const auto base = ember::sample::normal_base<float>({2}, half_width / 2);
    const ember::sample::AisResult ais = ember::sample::ais<float>(
        on_box, o.quick ? 100 : 1000, base, {.stages = o.quick ? 100 : 2000, .seed = o.seed + 7});
    Generator g(o.seed + 8);
    const Tensor test = ember::sample_toy2d<float>(kind, o.quick ? 500 : 10000, g);
    const ember::sample::LogLikelihood ll = ember::sample::log_likelihood<float>(on_box, test, ais);
    summary.results.emplace_back("test log-likelihood (AIS)", ll.mean);
    summary.results.emplace_back("AIS log Z", ais.log_z);
    summary.results.emplace_back("AIS log Z standard error", ais.stderr_log_z);
    summary.results.emplace_back("AIS ESS share", ais.ess / static_cast<double>(ais.log_weights.size()));
    std::printf("toy2d: test log-likelihood %.4f ± %.4f (log Z by AIS %.4f, ESS %.0f of %zu chains; points ± %.4f)",
                ll.mean, ll.stderr_log_z, ais.log_z, ais.ess, ais.log_weights.size(), ll.stderr_points);
    if (modes) {
        // log p(x) = logsumexp_k(-|x - c_k|² / 2s²) - log K - log(2π s²)
        double total = 0;
        const double s2 = modes->std * modes->std, k = static_cast<double>(modes->centres.size());
        for (Index i = 0; i < test.dim(0); ++i) {
            double top = -INFINITY, sum = 0;
            std::vector<double> e;
            for (const auto& c : modes->centres) {
                const double dx = test.at({i, 0}) - c[0], dy = test.at({i, 1}) - c[1];
                e.push_back(-(dx * dx + dy * dy) / (2 * s2));
                top = std::max(top, e.back());
            }
            for (double v : e) sum += std::exp(v - top);
            total += top + std::log(sum) - std::log(k) - std::log(2 * std::numbers::pi * s2);
        }
        const double truth = total / static_cast<double>(test.dim(0));
        summary.results.emplace_back("test log-likelihood of the true density", truth);
        std::printf("; the true density's %.4f", truth);
    }
    std::printf("\n");
}

// Points on the centres of an n x n grid over box², row 0 at the top (largest y), as
// heatmap_plot expects.
Tensor grid_points(int n, ember::AxisRange box) {
    Tensor g = Tensor::empty(ember::Shape{static_cast<Index>(n) * n, 2});
    const double h = (box.hi - box.lo) / n;
    float* p = g.data();
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < n; ++c, p += 2) {
            p[0] = static_cast<float>(box.lo + (c + 0.5) * h);
            p[1] = static_cast<float>(box.hi - (r + 0.5) * h);
        }
    return g;
}

int run(ember_examples::ExampleOptions& o, const ToyOptions& t) {
    const auto t0 = std::chrono::steady_clock::now();
    ember_examples::use_threads(o);
    const ember::Toy2d kind = ember::parse_toy2d(t.dist);
    const ember::AxisRange box = box_of(kind);
    const std::optional<ember::ToyModes> modes = modes_of(kind);
    const fs::path out(o.out), ckpt_path = out / "checkpoint.safetensors";
    fs::create_directories(out);

    Generator init(o.seed), buffer_gen(o.seed + 4);
    Context c{kind, o.batch, t.latent, Generator(o.seed + 1), Generator(o.seed + 2), Generator(o.seed + 3)};
    std::unique_ptr<ToyModel> model = make_model(t, init, buffer_gen, o.lr, box);
    std::int64_t step = 0;
    ember::Checkpoint<float> ckpt;
    model->checkpoint(ckpt);
    ckpt.add("data_rng", c.data).add("noise_rng", c.noise).add("aux_rng", c.aux).add("step", step);
    if (o.resume) {
        EMBER_CHECK(fs::exists(ckpt_path), "toy2d", "--resume: no checkpoint at ", ckpt_path.string());
        ckpt.load(ckpt_path);
        std::printf("resumed from %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
    }
    const std::int64_t total = o.iters;
    std::printf("toy2d: %s on %s; %lld parameters (MLPs of 3 x %lld units); batch %lld, lr %g, %lld iterations, seed %llu, "
                "%d threads\n",
                t.model.c_str(), t.dist.c_str(), static_cast<long long>(model->parameters()),
                static_cast<long long>(t.hidden), static_cast<long long>(o.batch), o.lr, static_cast<long long>(total),
                static_cast<unsigned long long>(o.seed), o.threads);
    std::fflush(stdout);

    // Metrics of a sample set; the evaluation noise comes from its own generator, made
    // afresh each time, so evaluating never changes the training run.
    auto evaluate = [&](const Tensor& s) -> std::optional<ember::ModeCoverage> {
        if (!modes) return std::nullopt;
        return ember::mode_coverage(s, *modes);
    };
    const std::int64_t start_step = step;
    Values last_row;  // the last logged window of losses, for summary.json
    std::vector<std::string> columns = model->losses();
    if (modes) columns.insert(columns.end(), {"modes_covered", "high_quality", "reverse_kl"});
    ember::MetricsLog metrics(out / "metrics.csv", step, columns);

    // Pictures: target | samples (| -U on a grid, for energy models).
    const Tensor target = [&] {
        Generator g(o.seed + 5);
        return ember::sample_toy2d<float>(kind, 2500, g);
    }();
    auto save_pictures = [&](const Tensor& samples) {
        ember::Plot2dOptions p{.title = "target (" + t.dist + ")", .x_range = box, .y_range = box, .point_size = 1};
        if (modes) p.modes = modes->centres;
        std::vector<ember::Image> panels{ember::scatter_plot(target, p)};
        p.title = t.model + ", " + std::to_string(samples.dim(0)) + " samples";
        p.point_size = 2;
        panels.push_back(ember::scatter_plot(samples, p));
        if (auto u = model->energy(grid_points(200, box))) {
            p.title = "-U(x), learned";
            p.modes.clear();
            panels.push_back(ember::heatmap_plot(Tensor(-*u).reshape(ember::Shape{200, 200}), p));
        }
        ember::save_png(out / "samples.png", ember::hstack(panels));
        ember::save_metrics_plot(out / "metrics.csv", out / "loss.png", model->losses());
    };
    auto eval_samples = [&] {
        Generator g(o.seed + 6);
        return model->sample(o.n_samples, g);
    };

    ember::Progress progress(total, {.label = "toy2d " + t.model, .start_step = step, .every_steps = 1000});
    Values window;  // sums of the losses since the last logged row
    for (const std::string& name : model->losses()) window.emplace_back(name, 0.0);
    int in_window = 0;
    while (step < total) {
        // Late in training, small steps let the samples settle into the narrow modes.
        const double progress_frac = std::min(1.0, static_cast<double>(step) / static_cast<double>(t.decay_iters));
        model->set_lr(o.lr * (1 - (1 - t.decay_floor) * progress_frac));
        const Values l = model->step(c);
        ++step;
        for (const auto& [name, v] : l)
            EMBER_CHECK(std::isfinite(v), "toy2d", "training diverged at iteration ", step, " (", name, " = ", v,
                        "); a smaller --lr may help");
        for (std::size_t i = 0; i < l.size(); ++i) window[i].second += l[i].second;
        ++in_window;
        progress.update(step, l);
        const bool eval_now = step % t.eval_every == 0 || step == total;
        if (step % t.log_every == 0 || step == total || eval_now) {
            Values row = window;
            for (auto& v : row) v.second /= in_window;
            last_row = row;
            if (eval_now) {
                if (const auto m = evaluate(eval_samples())) {
                    row.emplace_back("modes_covered", m->modes_covered);
                    row.emplace_back("high_quality", m->high_quality_share);
                    row.emplace_back("reverse_kl", m->reverse_kl);
                }
            }
            metrics.write(step, row);
            for (auto& v : window) v.second = 0;
            in_window = 0;
        }
        if (step % t.ckpt_every == 0 || step == total) {
            ckpt.save(ckpt_path, {{"example", "toy2d"}, {"model", t.model}, {"dist", t.dist}});
            if (step != total) save_pictures(eval_samples());
        }
    }
    progress.finish();

    // ---- final samples, pictures and metrics ------------------------------------------
    Generator g(o.seed + 6);
    const Tensor samples = model->final_sample(o.n_samples, g);
    ember::save_npy(out / "samples.npy", samples);
    save_pictures(samples);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    o.dataset = t.dist;  // the data, as summary.json records it
    ember_examples::RunSummary summary{.seconds = seconds, .threads = o.threads, .steps = step,
                                       .steps_this_run = step - start_step, .metrics = last_row, .results = {}};
    auto add_results = [&](const ember::ModeCoverage& m, const std::string& suffix) {
        summary.results.emplace_back("modes covered" + suffix, m.modes_covered);
        summary.results.emplace_back("high-quality share" + suffix, m.high_quality_share);
        summary.results.emplace_back("reverse KL" + suffix, m.reverse_kl);
    };
    if (const auto before = model->before_refinement())
        if (const auto m = evaluate(*before)) add_results(*m, " before MCMC");
    if (const auto m = evaluate(samples)) add_results(*m, "");
    if (const auto U = model->density_energy()) report_test_log_likelihood(U, kind, box, modes, o, summary);
    ember_examples::write_summary(o, summary);
    if (const auto before = model->before_refinement())
        if (const auto m = evaluate(*before))
            std::printf("toy2d: %s on %s before MCMC (plain G(z)): %d/%d modes covered, %.1f%% high-quality samples, "
                        "reverse KL %.4f\n",
                        t.model.c_str(), t.dist.c_str(), m->modes_covered, m->modes, 100 * m->high_quality_share,
                        m->reverse_kl);
    if (const auto m = evaluate(samples)) {
        std::printf("toy2d: %s on %s: %d/%d modes covered, %.1f%% high-quality samples, reverse KL %.4f "
                    "(%lld samples); %lld iterations in %.1f s; wrote %s/{samples.png, samples.npy, metrics.csv, "
                    "loss.png, checkpoint.safetensors}\n",
                    t.model.c_str(), t.dist.c_str(), m->modes_covered, m->modes, 100 * m->high_quality_share,
                    m->reverse_kl, static_cast<long long>(m->samples), static_cast<long long>(step), seconds, o.out.c_str());
    } else {
        std::printf("toy2d: %s on %s: %lld iterations in %.1f s (no mode metrics for this distribution); wrote "
                    "%s/{samples.png, samples.npy, metrics.csv, loss.png, checkpoint.safetensors}\n",
                    t.model.c_str(), t.dist.c_str(), static_cast<long long>(step), seconds, o.out.c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ember_examples::ExampleOptions o;
    o.name = "toy2d", o.out = "out/toy2d", o.batch = 256, o.lr = 1e-3, o.n_samples = 2500;
    ToyOptions t;
    ember_examples::Flags flags("toy2d: GANs, f-GANs, MEG, EBGAN and an SGLD-trained EBM on 2-D toy distributions");
    using ember_examples::Check;
    flags.add("--model", t.model, "gan, wgan_gp, meg, ebgan, ebm_sgld or fgan:<div> (div: kl, reverse_kl, "
              "pearson, neyman, hellinger, js, gan, tv)");
    flags.choice("--dist", t.dist, {"grid25", "ring8", "swiss_roll", "two_moons", "rings", "checkerboard"},
                 "grid25, ring8, swiss_roll, two_moons, rings or checkerboard");
    flags.add("--out", o.out, "output directory");
    flags.add("--iters", o.iters, "training iterations (default: per model, see the header)", Check::positive);
    flags.add("--batch", o.batch, "batch size", Check::positive);
    flags.add("--lr", o.lr, "Adam learning rate (betas 0.5, 0.9)", Check::positive);
    flags.add("--seed", o.seed, "random seed (initialisation, data, noise)");
    flags.add("--threads", o.threads, "threads for ember's kernels and GEMM (default: all)", Check::positive);
    flags.add("--n-samples", o.n_samples, "samples drawn for the picture, samples.npy and the metrics (ebm_sgld: at most --buffer chains)",
              Check::positive);
    flags.flag("--resume", o.resume, "continue from checkpoint.safetensors in --out");
    flags.flag("--quick", o.quick, "a short run for smoke tests (200 iterations, MLPs of 64 units; explicit flags win)");
    flags.add("--latent", t.latent, "generator noise dimension", Check::positive);
    flags.add("--hidden", t.hidden, "units of each of the 3 hidden layers", Check::positive);
    flags.add("--n-critic", t.n_critic, "critic (wgan_gp) or energy (meg) steps per generator step", Check::positive);
    flags.add("--gp", t.gp, "weight of the WGAN-GP penalty (wgan_gp) or the zero-centred R1 penalty (meg)", Check::non_negative);
    flags.add("--beta", t.beta, "meg: weight of the entropy term β Î_JSD(G(z); z)", Check::non_negative);
    flags.add("--margin", t.margin, "ebgan: margin m", Check::positive);
    flags.add("--pt-weight", t.pt_weight, "ebgan: weight of the pulling-away term", Check::non_negative);
    flags.add("--sgld-steps", t.sgld_steps, "ebm_sgld: SGLD steps per iteration", Check::positive);
    flags.add("--final-sgld-steps", t.final_sgld_steps, "ebm_sgld: SGLD steps refining the final samples", Check::non_negative);
    flags.add("--sgld-step", t.sgld_step, "ebm_sgld: SGLD step size α", Check::positive);
    flags.add("--sgld-noise", t.sgld_noise, "ebm_sgld: SGLD noise σ (0: √(2α))", Check::non_negative);
    flags.add("--buffer", t.buffer, "ebm_sgld: replay buffer size", Check::positive);
    flags.add("--magnitude", t.magnitude, "ebm_sgld: weight α_m of the energy-magnitude penalty", Check::non_negative);
    flags.add("--mcmc-warmup", t.mcmc_warmup, "meg: latent MALA warm-up steps on the final samples (step size adapted)",
              Check::non_negative);
    flags.add("--mcmc-steps", t.mcmc_steps, "meg: latent MALA steps on the final samples after warm-up (0 and "
              "--mcmc-warmup 0: plain G(z))", Check::non_negative);
    flags.add("--decay-iters", t.decay_iters, "iterations over which the lr decays linearly to --decay-floor · --lr "
              "(0: the model's default --iters)", Check::non_negative);
    flags.add("--decay-floor", t.decay_floor, "final lr as a fraction of --lr (1: no decay)", Check::unit_interval);
    flags.add("--eval-every", t.eval_every, "iterations between mode metrics in metrics.csv", Check::positive);
    flags.add("--ckpt-every", t.ckpt_every, "iterations between checkpoints and pictures", Check::positive);
    if (const std::optional<int> exit = flags.parse(argc, argv)) return *exit;
    o.command = ember_examples::command_line(argc, argv);
    const std::int64_t default_iters = t.model == "wgan_gp" || t.model == "meg" ? 14000 : t.model == "ebm_sgld" ? 1500 : 5000;
    if (o.iters == 0) o.iters = default_iters;
    if (t.decay_iters == 0) t.decay_iters = default_iters;
    if (o.quick) {
        if (!flags.given("--iters")) o.iters = 200;
        if (!flags.given("--hidden")) t.hidden = 64;
        if (!flags.given("--buffer")) t.buffer = 1000;
        if (!flags.given("--final-sgld-steps")) t.final_sgld_steps = 20;
        if (!flags.given("--eval-every")) t.eval_every = 100;
        if (!flags.given("--ckpt-every")) t.ckpt_every = 100;
    }
    return ember_examples::run_main(o.name, [&] { return run(o, t); });
}
