#pragma once
/// \file
/// What every sampler needs from an energy (docs/math.md §7): per-chain energies U(x_i) and their
/// gradients ∇U(x_i) at a batch of chain states x [N, ...] (N chains), the gradients from
/// the autodiff.
///
/// An energy is any callable Var<T> [N, ...] -> Var<T> [N] or [N, 1] (an nn::Module, a
/// lambda over ops). The gradient of chain i is read off ∇_x Σ_j U(x_j), which is chain i's
/// own gradient only when chains do not interact inside U: no BatchNorm in training mode in
/// an energy that is sampled (call .eval() on the network first).
///
/// Only ∇_x is computed: the parameters of the network inside U get no grad() and are
/// not touched, so sampling in the middle of a training step is safe.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <functional>
#include <type_traits>

#include "ember/autodiff/anomaly.hpp"
#include "ember/autodiff/engine.hpp"
#include "ember/core/instances.hpp"
#include "ember/core/threading.hpp"
#include "ember/energy/contrastive.hpp"
#include "ember/ops/packed_weights.hpp"
#include "ember/ops/reduce.hpp"

namespace ember::sample {

/// An energy: chain states [N, ...] to energies [N] or [N, 1].
template <Real T>
using EnergyFn = std::function<Var<T>(const Var<T>&)>;

/// EnergyFn<T> as a parameter from which T is not deduced: the samplers and functions that
/// take one deduce T from their state tensor, so any callable can be passed as it is,
///     sample::Mala chains([](const Var<double>& x) { return Var<double>(0.5 * sum(x * x, 1)); }, x0);
template <Real T>
using EnergyArg = std::type_identity_t<EnergyFn<T>>;

/// Energies U(x_i) [N] and gradients ∇U(x_i) (shaped like x) of a batch of chain states.
template <Real T>
struct EnergyGrad {
    /// U(x_i), [N].
    Tensor<T> energy;
    /// ∇U(x_i), shaped like x.
    Tensor<T> grad;
};

namespace detail {

// The batch [N, ...] as an N x D row-major matrix (one chain per row); t is contiguous.
template <Real T>
using RowsMap = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

template <Real T>
RowsMap<T> rows(const Tensor<T>& t) {
    const Index n = t.dim(0);
    return RowsMap<T>(t.data(), n, n == 0 ? 0 : t.numel() / n);
}

// Per-chain squared norms ||t_i||², in double.
template <Real T>
Eigen::VectorXd row_sq_norms(const Tensor<T>& t) {
    return rows(t).template cast<double>().rowwise().squaredNorm();
}

// Mean of all elements, accumulated in double.
template <Real T>
double mean(const Tensor<T>& t) {
    const Tensor<T> c = t.contiguous();
    return Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>>(c.data(), c.numel()).template cast<double>().mean();
}

// Copies chain i of `from` into chain i of `to` (both contiguous, same shape).
template <Real T>
void copy_row(const Tensor<T>& from, const Tensor<T>& to, Index i) {
    const Index d = from.numel() / from.dim(0);
    std::copy_n(from.data() + i * d, d, to.data() + i * d);
}

template <Real T>
void check_states(const Tensor<T>& x, const char* op, const char* what) {
    EMBER_CHECK(x.defined() && x.rank() >= 1 && x.dim(0) >= 1 && x.numel() > 0, op, what,
                " must be a non-empty batch of chain states [N, ...], got ",
                x.defined() ? x.shape().str() : std::string("an undefined tensor"));
}

// First chain whose energy or gradient is NaN or infinite, or -1.
template <Real T>
Index first_nonfinite_chain(const EnergyGrad<T>& e) {
    // Two vectorised scans (Eigen's allFinite tests row by row, element by element).
    const Index n = e.energy.numel(), per_chain = n == 0 ? 0 : e.grad.numel() / n;
    const Index bad_energy = ember::detail::first_non_finite(e.energy.data(), n);
    const Index bad_grad = ember::detail::first_non_finite(e.grad.data(), e.grad.numel());
    const Index bad_grad_chain = bad_grad < 0 ? -1 : bad_grad / per_chain;
    if (bad_energy < 0) return bad_grad_chain;
    return bad_grad_chain < 0 ? bad_energy : std::min(bad_energy, bad_grad_chain);
}

// The error for chain i, whose energy u or gradient is not finite.
template <Real T>
[[noreturn]] void fail_nonfinite(Index i, T u, const char* op, const char* where) {
    ember::detail::fail(op, "the energy or its gradient is not finite for chain ", i, " ", where, " (U = ", u,
         "); a smaller step size, or an energy that is finite on the whole state space, avoids this");
}
template <Real T>
void check_finite(const EnergyGrad<T>& e, const char* op, const char* where) {
    const Index i = first_nonfinite_chain(e);
    if (i >= 0) fail_nonfinite(i, e.energy.data()[i], op, where);
}

// One graph for the whole batch x.
template <Real T>
EnergyGrad<T> energy_and_grad_batch(const EnergyFn<T>& energy, const Tensor<T>& x, const char* op) {
    GradModeGuard on(true);
    const Var<T> leaf(x, true);
    const Var<T> u = ember::energy::detail::call_per_sample(energy, leaf, op);
    // An energy that ignores x has a zero gradient (grad() returns zeros for it).
    const Var<T> g = u.requires_grad() ? grad(sum(u), {leaf})[0] : Var<T>(Tensor<T>::zeros(x.shape()));
    return {u.value().contiguous(), g.value().contiguous()};
}

// At least this many chains per thread, or splitting the batch costs more than it saves.
inline constexpr Index kMinChainsPerThread = 8;

// The groups for_chain_groups splits n chains into.
inline int chain_groups(Index n, bool parallel_chains) {
    return parallel_chains && !in_parallel_region()
               ? static_cast<int>(std::min<Index>(num_threads(), n / kMinChainsPerThread))
               : 1;
}

}  // namespace detail

/// U(x_i) and ∇U(x_i) for the chain states x [N, ...] in groups of chains: then(begin, end,
/// part) receives chains [begin, end) as soon as their energies and gradients are known.
/// Runs with gradients enabled even inside NoGrad (evaluation code often samples there).
/// `op` names the caller in error messages.
///
/// With parallel_chains, the chains are split into one contiguous group per thread and
/// each group gets its own graph, evaluated on its own thread with single-threaded kernels,
/// and `then` runs on that thread too (a sampler moves the group's chains there, with no
/// further parallel region). A step on a small batch (64 latent chains through an MLP) is
/// then about a fifth faster than splitting every matrix product across the threads. It
/// requires an energy that may be called from several threads at once: ember's modules and
/// ops are (their parameters are only read: grad() with respect to x never writes to
/// them), a lambda that changes captured state is not. The result equals the one-graph
/// result up to rounding. Without parallel_chains there is one group, [0, N).
template <Real T, class Then>
void for_chain_groups(const EnergyFn<T>& energy, const Tensor<T>& x, const char* op, bool parallel_chains, Then&& then) {
    detail::check_states(x, op, "the chain states");
    EMBER_CHECK(static_cast<bool>(energy), op, "the energy function is empty");
    const Index n = x.dim(0);
    const int groups = detail::chain_groups(n, parallel_chains);
    if (groups <= 1) {
        then(Index{0}, n, detail::energy_and_grad_batch(energy, x, op));
        return;
    }
    const Tensor<T> xc = x.contiguous();
    // Thread-local settings, passed on to the tasks: anomaly mode and the ConstantWeights scope.
    const bool anomaly = anomaly_enabled();
    ember::detail::WeightPackCache* const weights = ember::detail::active_weight_cache();
    parallel_tasks(groups, [&](int k) {
        const Index begin = n * k / groups, end = n * (k + 1) / groups;
        DetectAnomaly same_mode(anomaly);
        ember::detail::UseWeightCache same_weights(weights);
        then(begin, end, detail::energy_and_grad_batch(energy, xc.slice(0, begin, end).contiguous(), op));
    });
}

/// U(x_i) and ∇U(x_i) for every chain state in x [N, ...], by for_chain_groups.
template <Real T>
EnergyGrad<T> energy_and_grad(const EnergyArg<T>& energy, const Tensor<T>& x, const char* op = "energy_and_grad",
                              bool parallel_chains = false) {
    EnergyGrad<T> out;
    if (x.defined() && x.rank() >= 1 && detail::chain_groups(x.dim(0), parallel_chains) > 1)
        out = {Tensor<T>::empty(Shape{x.dim(0)}), Tensor<T>::empty(x.shape())};
    for_chain_groups(energy, x, op, parallel_chains, [&](Index begin, Index end, EnergyGrad<T> part) {
        if (!out.energy.defined()) {  // one group: the whole batch
            out = std::move(part);
            return;
        }
        const Index per_chain = part.grad.numel() / (end - begin);
        std::copy_n(part.energy.data(), end - begin, out.energy.data() + begin);
        std::copy_n(part.grad.data(), (end - begin) * per_chain, out.grad.data() + begin * per_chain);
    });
    return out;
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_SAMPLE_ENERGY_INSTANCES(X, T) \
    X template EnergyGrad<T> energy_and_grad<T>(const EnergyFn<T>&, const Tensor<T>&, const char*, bool);
EMBER_EXTERN_INSTANCES(EMBER_SAMPLE_ENERGY_INSTANCES)

}  // namespace ember::sample
