// sampler_gallery: unadjusted Langevin (ULA), MALA and HMC on three 2-D energies whose
// densities p(x) ∝ exp(-U(x)) are known, pictured next to the truth.
//
//   mixture  four Gaussians (std 0.5) at (±1.5, ±1.5), weights 0.1, 0.2, 0.3, 0.4
//   ring     U = (|x| - 2)² / (2 · 0.15²): a thin circle of radius 2
//   banana   x₁ ~ N(0, 1.5²), x₂ | x₁ ~ N(0.3 x₁² - 1, 0.4²): a curved ridge
//
// For each energy, --chains chains start from N(0, 2² I). MALA and HMC (--leapfrog steps)
// warm up for --warmup steps, adapting their step toward acceptance 0.574 and 0.65; ULA
// then runs with MALA's adapted step, so its O(ε) bias is visible at the step MALA uses
// (and where that step makes ULA diverge, the picture says so).
// Every sampler records --steps steps of all chains.
//
// Writes to --out:
//   sampler_gallery.png  one row per energy: the true density on a grid, then a 2-D
//                        histogram of each sampler's draws over the same range
//   summary.csv          per energy and sampler: step size, acceptance, the total-variation
//                        distance between the draws' histogram and the true cell
//                        probabilities (60 x 60 cells; 0 = perfect, 1 = disjoint), and the
//                        ESS and split R-hat of x₁
//
//   sampler_gallery [--chains N] [--warmup N] [--steps N] [--leapfrog L] [--seed S]
//                   [--threads T] [--out DIR] [--quick]

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ember/ember.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "common/flags.hpp"

namespace fs = std::filesystem;
using ember::Index;
using ember::Shape;
using ember::Tensor;
using V = ember::Var<double>;
namespace sample = ember::sample;

namespace {

struct Options {
    Index chains = 1000;
    Index warmup = 300;
    Index steps = 500;
    int leapfrog = 10;
    std::uint64_t seed = 1;
    int threads = 2;
    std::string out = "sampler_gallery_out";
    bool quick = false;
};

struct Energy2d {
    std::string name;
    sample::EnergyFn<double> U;
    ember::AxisRange x_range, y_range;
};

V coordinate(const V& x, Index i) { return ember::slice(x, 1, i, i + 1); }

// -log Σ_k w_k N(x; μ_k, s² I), up to a constant, through logsumexp over the components.
Energy2d mixture() {
    const double s = 0.5;
    const Tensor<double> mu = Tensor<double>::from(Shape{2, 4}, {-1.5, 1.5, -1.5, 1.5, -1.5, -1.5, 1.5, 1.5});  // μ_kᵀ
    const Tensor<double> log_w = Tensor<double>::from(Shape{4}, {std::log(0.1), std::log(0.2), std::log(0.3), std::log(0.4)});
    Tensor<double> mu_sq = Tensor<double>::empty(Shape{4});
    for (Index k = 0; k < 4; ++k) mu_sq.data()[k] = mu.data()[k] * mu.data()[k] + mu.data()[4 + k] * mu.data()[4 + k];
    auto U = [=](const V& x) {
        // |x - μ_k|² = |x|² - 2 x·μ_k + |μ_k|², as an [N, 4] matrix.
        const V x_sq = ember::sum(V(x * x), 1, true);
        const V d2(x_sq - 2.0 * ember::matmul(x, V(mu)) + mu_sq);
        return V(-ember::logsumexp(V(log_w - d2 / (2 * s * s)), 1));
    };
    return {"mixture", U, {-3.5, 3.5}, {-3.5, 3.5}};
}

Energy2d ring() {
    const double r0 = 2, w = 0.15;
    auto U = [=](const V& x) {
        const V r(sqrt(V(ember::sum(V(x * x), 1) + 1e-12)));
        return V((r - r0) * (r - r0) / (2 * w * w));
    };
    return {"ring", U, {-3, 3}, {-3, 3}};
}

Energy2d banana() {
    auto U = [](const V& x) {
        const V a = coordinate(x, 0), b = coordinate(x, 1);
        const V ridge(b - (0.3 * a * a - 1.0));
        return V(ember::reshape(V(a * a / (2 * 1.5 * 1.5) + ridge * ridge / (2 * 0.4 * 0.4)), Shape{x.dim(0)}));
    };
    return {"banana", U, {-5, 5}, {-2.5, 6}};
}

// Cell probabilities of the true density on a bins x bins grid (row 0 = largest y, as
// heatmap_plot draws it), from exp(-U) at the cell centres, normalised.
Tensor<double> true_cells(const Energy2d& e, Index bins) {
    Tensor<double> pts = Tensor<double>::empty(Shape{bins * bins, 2});
    for (Index r = 0; r < bins; ++r)
        for (Index c = 0; c < bins; ++c) {
            const Index i = r * bins + c;
            pts.data()[2 * i] = e.x_range.lo + (static_cast<double>(c) + 0.5) * (e.x_range.hi - e.x_range.lo) / bins;
            pts.data()[2 * i + 1] = e.y_range.hi - (static_cast<double>(r) + 0.5) * (e.y_range.hi - e.y_range.lo) / bins;
        }
    ember::NoGrad no_grad;
    const Tensor<double> u = e.U(V(pts)).value().contiguous();
    double lo = u.data()[0];
    for (Index i = 0; i < u.numel(); ++i) lo = std::min(lo, u.data()[i]);
    Tensor<double> p = Tensor<double>::empty(Shape{bins, bins});
    double total = 0;
    for (Index i = 0; i < u.numel(); ++i) total += p.data()[i] = std::exp(-(u.data()[i] - lo));
    for (Index i = 0; i < u.numel(); ++i) p.data()[i] /= total;
    return p;
}

// Share of the draws in each cell of the same grid (draws outside the range count in the
// total, so the distance also sees mass the sampler put outside the picture).
Tensor<double> draw_cells(const std::vector<Tensor<double>>& draws, const Energy2d& e, Index bins) {
    Tensor<double> h = Tensor<double>::zeros(Shape{bins, bins});
    double total = 0;
    for (const Tensor<double>& d : draws)
        for (Index i = 0; i < d.dim(0); ++i) {
            total += 1;
            const double x = d.data()[2 * i], y = d.data()[2 * i + 1];
            const auto c = static_cast<Index>(std::floor((x - e.x_range.lo) / (e.x_range.hi - e.x_range.lo) * bins));
            const auto r = static_cast<Index>(std::floor((e.y_range.hi - y) / (e.y_range.hi - e.y_range.lo) * bins));
            if (c >= 0 && c < bins && r >= 0 && r < bins) h.data()[r * bins + c] += 1;
        }
    for (Index i = 0; i < h.numel(); ++i) h.data()[i] /= total;
    return h;
}

double total_variation(const Tensor<double>& p, const Tensor<double>& q) {
    double s = 0, mass_q = 0;
    for (Index i = 0; i < p.numel(); ++i) s += std::abs(p.data()[i] - q.data()[i]), mass_q += q.data()[i];
    return 0.5 * (s + (1 - mass_q));  // q's mass outside the grid is all error
}

struct Run {
    std::string sampler;
    sample::ChainStats stats;
    std::vector<Tensor<double>> draws;
};

// Records every step's states; returns the run's statistics.
template <class Sampler>
Run record(const char* name, Sampler& s, Index steps) {
    Run r{name, {}, {}};
    r.draws.reserve(static_cast<std::size_t>(steps));
    r.stats = s.run(steps, [&](const Tensor<double>& x, std::int64_t) { r.draws.push_back(x.clone()); });
    return r;
}

// x₁ of every chain at every step, as traces [chains, steps].
Tensor<double> first_coordinate_traces(const std::vector<Tensor<double>>& draws) {
    const Index steps = static_cast<Index>(draws.size()), chains = draws.front().dim(0);
    Tensor<double> t = Tensor<double>::empty(Shape{chains, steps});
    for (Index s = 0; s < steps; ++s)
        for (Index c = 0; c < chains; ++c) t.data()[c * steps + s] = draws[static_cast<std::size_t>(s)].data()[2 * c];
    return t;
}

Tensor<double> stack_draws(const std::vector<Tensor<double>>& draws) {
    const Index per = draws.front().dim(0);
    Tensor<double> all = Tensor<double>::empty(Shape{per * static_cast<Index>(draws.size()), 2});
    for (std::size_t s = 0; s < draws.size(); ++s)
        std::copy_n(draws[s].data(), 2 * per, all.data() + 2 * per * static_cast<Index>(s));
    return all;
}

int run(const Options& o) {
    ember::set_num_threads(o.threads);
    fs::create_directories(o.out);
    std::printf("sampler_gallery: %lld chains, %lld warm-up and %lld recorded steps, HMC with %d leapfrog steps, seed %llu\n",
                static_cast<long long>(o.chains), static_cast<long long>(o.warmup), static_cast<long long>(o.steps),
                o.leapfrog, static_cast<unsigned long long>(o.seed));
    const auto t0 = std::chrono::steady_clock::now();
    constexpr Index kBins = 60;
    std::string csv = "energy,sampler,step_size,acceptance,tv_distance,ess_x1,rhat_x1\n";
    std::vector<ember::Image> rows;
    for (const Energy2d& e : {mixture(), ring(), banana()}) {
        ember::Generator g(o.seed);
        const Tensor<double> start = ember::normal<double>(Shape{o.chains, 2}, g, 0.0, 2.0);
        sample::Mala<double> mala(e.U, start, {.step_size = 0.1, .seed = o.seed + 1});
        sample::Hmc<double> hmc(e.U, start, {.step_size = 0.1, .leapfrog_steps = o.leapfrog, .seed = o.seed + 2});
        mala.warmup(o.warmup);
        hmc.warmup(o.warmup);
        // ULA at MALA's adapted step, burnt in as long as the others. With no accept step
        // it can diverge where MALA merely rejects (the banana's steep ridge): that is
        // shown, not hidden.
        sample::Langevin<double> ula(e.U, start, {.step_size = mala.step_size(), .seed = o.seed + 3});
        std::vector<Run> runs;
        try {
            ula.run(o.warmup);
            runs.push_back(record("ULA", ula, o.steps));
        } catch (const ember::Error& err) {
            std::printf("  %-8s ULA   diverged at MALA's step %.4f: %s\n", e.name.c_str(), mala.step_size(), err.what());
        }
        runs.push_back(record("MALA", mala, o.steps));
        runs.push_back(record("HMC", hmc, o.steps));

        const Tensor<double> truth = true_cells(e, kBins);
        ember::Plot2dOptions plot{.title = e.name + ": true density", .x_range = e.x_range, .y_range = e.y_range,
                                  .width = 240, .height = 240};
        std::vector<ember::Image> panels{ember::heatmap_plot(true_cells(e, 120), plot)};
        plot.bins = 120;
        if (runs.front().sampler != "ULA") {  // an empty panel where ULA's picture would be
            plot.title = "ULA: diverged";
            panels.push_back(ember::scatter_plot(Tensor<double>::zeros(Shape{0, 2}), plot));
        }
        for (const Run& r : runs) {
            const double tv = total_variation(truth, draw_cells(r.draws, e, kBins));
            const Tensor<double> x1 = first_coordinate_traces(r.draws);
            const double ess = sample::ess(x1), rhat = sample::rhat(x1);
            char title[128];
            std::snprintf(title, sizeof title, "%s: acc %.2f, TV %.3f", r.sampler.c_str(), r.stats.acceptance_rate, tv);
            plot.title = title;
            panels.push_back(ember::density_plot(stack_draws(r.draws), plot));
            char line[256];
            std::snprintf(line, sizeof line, "%s,%s,%.6g,%.6g,%.6g,%.6g,%.6g\n", e.name.c_str(), r.sampler.c_str(),
                          r.stats.step_size, r.stats.acceptance_rate, tv, ess, rhat);
            csv += line;
            std::printf("  %-8s %-5s step %.4f  acceptance %.3f  TV %.3f  ESS(x1) %8.0f  R-hat(x1) %.3f\n", e.name.c_str(),
                        r.sampler.c_str(), r.stats.step_size, r.stats.acceptance_rate, tv, ess, rhat);
        }
        rows.push_back(ember::hstack(panels));
    }
    ember::save_png(fs::path(o.out) / "sampler_gallery.png", ember::vstack(rows));
    ember::write_file_atomic(fs::path(o.out) / "summary.csv", csv, "sampler_gallery");
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("wrote %s/sampler_gallery.png and summary.csv in %.1f s\n", o.out.c_str(), secs);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    ember_examples::Flags flags("sampler_gallery: ULA, MALA and HMC on 2-D energies with known densities");
    using ember_examples::Check;
    flags.add("--chains", o.chains, "chains per sampler", Check::range(2, 1000000));
    flags.add("--warmup", o.warmup, "warm-up steps (step-size adaptation for MALA and HMC)", Check::non_negative);
    flags.add("--steps", o.steps, "recorded steps", Check::range(4, 1000000));
    flags.add("--leapfrog", o.leapfrog, "leapfrog steps per HMC transition", Check::range(1, 1000));
    flags.add("--seed", o.seed, "random seed (starting points, chains)");
    flags.add("--threads", o.threads, "threads for ember's kernels", Check::positive);
    flags.add("--out", o.out, "output directory");
    flags.flag("--quick", o.quick, "200 chains, 50 warm-up and 50 recorded steps, for smoke tests");
    flags.quick_default("--chains", o.chains, Index{200})
        .quick_default("--warmup", o.warmup, decltype(o.warmup){50})
        .quick_default("--steps", o.steps, Index{50});
    return flags.run(argc, argv, "sampler_gallery", o.quick, [&] { return run(o); });
}
