// mi_bench: the correlated-Gaussians benchmark of Poole et al. 2019 ("On variational bounds
// of mutual information", §4 and Fig. 2) for ember's mutual-information estimators.
//
//   x ~ N(0, I_20),  y = ρx + √(1-ρ²)ε,  I(X;Y) = -(d/2) log(1-ρ²)   (docs/math.md §8)
//
// The true MI steps through 2, 4, 6, 8, 10 nats, --steps-per-level steps each (ρ changes,
// the critics keep training). Every estimator trains its own critic with Adam (lr 5e-4) on
// batches of --batch fresh pairs, maximising its own objective. The critic (--critic) is
//   separable  T(x,y) = g(x)ᵀh(y), two towers: ReLU MLP 20 → H → H → 32 plus a linear
//              shortcut 20 → 32 (the default; one product for the B×B score matrix), or
//   concat     T(x,y) = MLP([x, y]), ReLU 40 → H → H → 1, evaluated on all B² pairs
//              (info::all_pairs; Poole et al.'s notebook default, B times the cost).
// The objectives:
//
//   nwj      Î_NWJ = E_joint[T] - e^{-1} E_marg[e^T]
//   dv       Î_DV  = E_joint[T] - log E_marg[e^T]          (plain minibatch gradient)
//   mine     Î_DV, gradient corrected by a moving average (rate 0.01; Belghazi et al. 2018)
//   js_nwj   trained on Î_JSD, reports NWJ(T + 1)          (Poole et al.'s "JS")
//   infonce  Î_NCE, ≤ log B
//
// Each step's estimate is computed on the fresh batch before the critic's update.
//
//   mi_bench [--critic separable|concat] [--steps-per-level N] [--batch B] [--hidden H] [--lr X] [--seed S]
//            [--threads T] [--out DIR] [--quick]
//
// Writes to --out: metrics.csv (every step: step, true_mi, each estimate), summary.csv
// (per level: the mean of each estimate over the level's last 20% of steps), and
// mi_bench.png (exponential moving averages of the estimates, span 100 steps, against the
// true MI; Poole et al. plot the same smoothing).

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ember/ember.hpp>
#include <ember/info/info.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/flags.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Tensor;
using Vf = ember::Var<float>;

namespace {

struct Options {
    std::int64_t steps_per_level = 4000;
    Index batch = 64, hidden = 64;
    double lr = 5e-4;
    std::uint64_t seed = 0;
    int threads = 1;  // the matrices are small: one thread is fastest
    std::string out = "out/mi_bench";
    std::string critic = "separable";
    bool quick = false;
};

constexpr Index kDim = 20, kEmbed = 32;
const std::vector<double> kLevels{2, 4, 6, 8, 10};
const std::vector<std::string> kNames{"nwj", "dv", "mine", "js_nwj", "infonce"};

// One tower of the separable critic (see the top of the file). The shortcut carries the
// bilinear part of the Gaussian's optimal critic log p(x,y)/(p(x)p(y)) from the start.
class Tower : public ember::nn::Module<float> {
public:
    Tower(ember::Generator& init, Index hidden) {
        mlp_ = register_module("mlp", std::make_shared<ember::nn::Sequential<float>>());
        mlp_->add<ember::nn::Linear>(kDim, hidden, init);
        mlp_->add<ember::nn::ReLU>();
        mlp_->add<ember::nn::Linear>(hidden, hidden, init);
        mlp_->add<ember::nn::ReLU>();
        mlp_->add<ember::nn::Linear>(hidden, kEmbed, init);
        skip_ = register_module("skip", std::make_shared<ember::nn::Linear<float>>(kDim, kEmbed, init, false));
    }
    Vf forward(const Vf& x) override { return Vf((*mlp_)(x) + (*skip_)(x)); }
    std::string describe() const override { return "Tower"; }

private:
    std::shared_ptr<ember::nn::Sequential<float>> mlp_;
    std::shared_ptr<ember::nn::Linear<float>> skip_;
};

struct Critic {
    // separable: the towers g and h; concat: the joint MLP.
    std::unique_ptr<Tower> g, h;
    std::unique_ptr<ember::nn::Sequential<float>> joint;
    std::unique_ptr<ember::Adam<float>> opt;
    Critic(ember::Generator& init, const Options& o) {
        if (o.critic == "concat") {
            joint = std::make_unique<ember::nn::Sequential<float>>();
            joint->add<ember::nn::Linear>(2 * kDim, o.hidden, init);
            joint->add<ember::nn::ReLU>();
            joint->add<ember::nn::Linear>(o.hidden, o.hidden, init);
            joint->add<ember::nn::ReLU>();
            joint->add<ember::nn::Linear>(o.hidden, 1, init);
        } else {
            g = std::make_unique<Tower>(init, o.hidden);
            h = std::make_unique<Tower>(init, o.hidden);
        }
        opt = std::make_unique<ember::Adam<float>>(params(), ember::AdamOptions{.lr = o.lr});
    }
    std::vector<Vf> params() const {
        if (joint) return joint->parameters();
        auto p = g->parameters();
        for (const auto& q : h->parameters()) p.push_back(q);
        return p;
    }
    // scores(i, j) = T(x_i, y_j), [B, B].
    Vf scores(const Vf& x, const Vf& y) {
        if (!joint) return ember::info::score_matrix((*g)(x), (*h)(y));
        const Index B = x.dim(0);
        return ember::reshape((*joint)(ember::info::all_pairs(x, y)), ember::Shape{B, B});
    }
    // One step: the estimate on this batch, then one Adam step up its objective.
    template <class Objective>
    double step(const Vf& x, const Vf& y, Objective&& objective) {
        opt->zero_grad();
        const Vf est = objective(scores(x, y));
        ember::backward(Vf(-est));
        opt->step();
        return static_cast<double>(est.item());
    }
};

int run(const Options& o) {
    ember::set_num_threads(o.threads);
    fs::create_directories(o.out);
    const fs::path out(o.out);
    const auto t0 = std::chrono::steady_clock::now();

    ember::Generator init(o.seed), data(o.seed + 1);
    std::vector<std::unique_ptr<Critic>> critics;
    for (std::size_t k = 0; k < kNames.size(); ++k) critics.push_back(std::make_unique<Critic>(init, o));
    ember::info::Mine<float> mine(0.01);
    const std::int64_t total = o.steps_per_level * static_cast<std::int64_t>(kLevels.size());
    const std::string critic_text =
        o.critic == "concat"
            ? "concat MLP " + std::to_string(2 * kDim) + "-" + std::to_string(o.hidden) + "-" + std::to_string(o.hidden) + "-1 on all B^2 pairs"
            : "separable, 2 x (MLP " + std::to_string(kDim) + "-" + std::to_string(o.hidden) + "-" + std::to_string(o.hidden) + "-" +
                  std::to_string(kEmbed) + " + linear shortcut)";
    std::printf("mi_bench: d = %lld, batch %lld, critics %s, Adam lr %g, "
                "%lld steps per level, true MI %s nats, seed %llu, %d thread(s)\n",
                static_cast<long long>(kDim), static_cast<long long>(o.batch), critic_text.c_str(), o.lr,
                static_cast<long long>(o.steps_per_level), "2, 4, 6, 8, 10", static_cast<unsigned long long>(o.seed),
                o.threads);

    std::vector<std::string> columns{"true_mi"};
    columns.insert(columns.end(), kNames.begin(), kNames.end());
    ember::MetricsLog metrics(out / "metrics.csv", 0, columns);
    ember::Progress progress(total, {.label = "mi_bench", .every_steps = 2000});

    // Curves for the picture (smoothed) and per-level tail means for the summary.
    const double alpha = 2.0 / (100 + 1);  // EMA with a span of 100 steps
    std::vector<double> steps_x, truth;
    std::vector<std::vector<double>> smooth(kNames.size());
    std::vector<double> ema(kNames.size(), 0);
    std::vector<std::vector<double>> level_means(kLevels.size(), std::vector<double>(kNames.size(), 0));
    std::vector<double> nce_max(kLevels.size(), -INFINITY);
    const std::int64_t tail = std::max<std::int64_t>(1, o.steps_per_level / 5);

    std::int64_t step = 0;
    for (std::size_t level = 0; level < kLevels.size(); ++level) {
        const double I = kLevels[level];
        const double rho = std::sqrt(1 - std::exp(-2 * I / static_cast<double>(kDim)));
        const float a = static_cast<float>(rho), b = static_cast<float>(std::sqrt(1 - rho * rho));
        for (std::int64_t s = 0; s < o.steps_per_level; ++s, ++step) {
            const Tensor<float> x = ember::normal<float>({o.batch, kDim}, data), e = ember::normal<float>({o.batch, kDim}, data);
            const Vf xv(x), yv(Tensor<float>(x * a + e * b));
            namespace info = ember::info;
            std::vector<double> v(kNames.size());
            v[0] = critics[0]->step(xv, yv, [](const Vf& S) { return info::nwj(S); });
            v[1] = critics[1]->step(xv, yv, [](const Vf& S) { return info::dv(S); });
            v[2] = critics[2]->step(xv, yv, [&](const Vf& S) { return mine.surrogate(S); });
            v[3] = critics[3]->step(xv, yv, [](const Vf& S) { return info::jsd_nwj(S); });
            v[4] = critics[4]->step(xv, yv, [](const Vf& S) { return info::infonce(S); });
            nce_max[level] = std::max(nce_max[level], v[4]);

            std::vector<std::pair<std::string, double>> row{{"true_mi", I}};
            for (std::size_t k = 0; k < kNames.size(); ++k) {
                row.emplace_back(kNames[k], v[k]);
                // A diverging NWJ batch can be -inf; keep the picture's average finite.
                const double clipped = std::isfinite(v[k]) ? v[k] : (v[k] > 0 ? 50.0 : -50.0);
                ema[k] = step == 0 ? clipped : (1 - alpha) * ema[k] + alpha * clipped;
                smooth[k].push_back(ema[k]);
                if (s >= o.steps_per_level - tail) level_means[level][k] += v[k] / static_cast<double>(tail);
            }
            steps_x.push_back(static_cast<double>(step + 1));
            truth.push_back(I);
            metrics.write(step + 1, row);
            progress.update(step + 1, {{"true", I}, {"nwj", v[0]}, {"js_nwj", v[3]}, {"infonce", v[4]}});
        }
    }
    progress.finish();

    // ---- summary ------------------------------------------------------------------------
    std::string csv = "level,true_mi";
    for (const auto& n : kNames) csv += "," + n;
    csv += ",infonce_max\n";
    std::printf("\nmean of the last %lld steps of each level (log B = %.3f):\n  true ", static_cast<long long>(tail),
                std::log(static_cast<double>(o.batch)));
    for (const auto& n : kNames) std::printf("%9s", n.c_str());
    std::printf("\n");
    for (std::size_t level = 0; level < kLevels.size(); ++level) {
        std::printf("  %4.0f ", kLevels[level]);
        csv += std::to_string(level) + "," + ember::MetricsLog::format_value(kLevels[level]);
        for (std::size_t k = 0; k < kNames.size(); ++k) {
            std::printf("%9.3f", level_means[level][k]);
            csv += "," + ember::MetricsLog::format_value(level_means[level][k]);
        }
        csv += "," + ember::MetricsLog::format_value(nce_max[level]) + "\n";
        std::printf("\n");
    }
    ember::write_file_atomic(out / "summary.csv", csv, "mi_bench");

    std::vector<ember::Series> series{{"true MI", steps_x, truth}};
    for (std::size_t k = 0; k < kNames.size(); ++k) series.push_back({kNames[k], steps_x, smooth[k]});
    series.push_back({"log B", {steps_x.front(), steps_x.back()},
                      {std::log(static_cast<double>(o.batch)), std::log(static_cast<double>(o.batch))}});
    ember::save_line_plot(out / "mi_bench.png", series,
                          {.title = "MI estimates on correlated Gaussians (d = 20), EMA over 100 steps",
                           .y_label = "nats",
                           .width = 900,
                           .height = 500,
                           .y_range = ember::AxisRange{-1, 12}});

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("mi_bench: %lld steps x %zu critics in %.1f s; wrote %s/{metrics.csv, summary.csv, mi_bench.png}\n",
                static_cast<long long>(total), kNames.size(), seconds, o.out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    ember_examples::Flags flags("mi_bench: mutual-information estimators on correlated Gaussians (Poole et al. 2019)");
    using ember_examples::Check;
    flags.add("--steps-per-level", o.steps_per_level, "training steps at each true MI (2, 4, 6, 8, 10 nats)", Check::positive);
    flags.add("--batch", o.batch, "batch size B (InfoNCE is capped at log B)", Check::range(2, 4096));
    flags.choice("--critic", o.critic, {"separable", "concat"}, "separable (g(x)ᵀh(y)) or concat (MLP([x, y]) on all B² pairs)");
    flags.add("--hidden", o.hidden, "hidden units of each critic tower (or of the concat MLP)", Check::positive);
    flags.add("--lr", o.lr, "Adam learning rate", Check::positive);
    flags.add("--seed", o.seed, "random seed (initialisation, data)");
    flags.add("--threads", o.threads, "threads for ember's kernels and GEMM", Check::positive);
    flags.add("--out", o.out, "output directory");
    flags.flag("--quick", o.quick, "200 steps per level, for smoke tests (an explicit --steps-per-level wins)");
    flags.quick_default("--steps-per-level", o.steps_per_level, decltype(o.steps_per_level){200});
    return flags.run(argc, argv, "mi_bench", o.quick, [&] { return run(o); });
}
