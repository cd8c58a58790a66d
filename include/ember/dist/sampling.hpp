#pragma once
/// \file
/// Samplers across processes: the chains are sharded (each rank runs its own batch of
/// chains with its own random stream), and the statistics are combined afterwards.
///
///     const auto seed = dist::rank_seed(base_seed, comm.rank());
///     sample::Mala<double> mala(energy, my_initial_states, {.step_size = 0.1, .seed = seed});
///     mala.warmup(500);
///     ChainStats local = mala.run(1000, record_into(my_traces));     // my_traces [my chains, draws]
///     ChainStats all = dist::reduce_chain_stats(comm, local);        // over every chain
///     double e = dist::ess(comm, my_traces), r = dist::rhat(comm, my_traces);
///
/// Chains of different ranks never interact, so a K-process run is exactly K independent
/// sets of chains; R-hat over all of them is then a real test that they agree.

#include <cstdint>
#include <vector>

#include "ember/dist/collectives.hpp"
#include "ember/sample/chains.hpp"
#include "ember/sample/diagnostics.hpp"

namespace ember::dist {

/// The seed of rank `rank`'s chains: seed + rank · 2^32. Philox streams with different
/// keys are independent, and the 2^32 spacing keeps the ranks' seeds away from the small
/// offsets (seed + 1, seed + 2, ...) that programs use for their other streams.
inline constexpr std::uint64_t kRankSeedStride = std::uint64_t{1} << 32;
/// seed + rank · kRankSeedStride: the seed of rank `rank`'s chains.
inline std::uint64_t rank_seed(std::uint64_t seed, int rank) {
    return seed + static_cast<std::uint64_t>(rank) * kRankSeedStride;
}

/// Every rank's `local` values concatenated in rank order, on every rank.
inline std::vector<double> allgather(const Communicator& comm, const std::vector<double>& local) {
    const char* op = "dist::allgather";
    int n = detail::to_count(static_cast<std::int64_t>(local.size()), op);
    std::vector<int> counts(static_cast<std::size_t>(comm.size())), displs(counts.size());
    detail::check(MPI_Allgather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, comm.comm()), "MPI_Allgather");
    std::int64_t total = 0;
    for (std::size_t r = 0; r < counts.size(); ++r) {
        displs[r] = detail::to_count(total, op);
        total += counts[r];
    }
    std::vector<double> out(static_cast<std::size_t>(detail::to_count(total, op)));
    detail::check(MPI_Allgatherv(local.data(), n, MPI_DOUBLE, out.data(), counts.data(), displs.data(), MPI_DOUBLE,
                                 comm.comm()),
                  "MPI_Allgatherv");
    return out;
}

/// The statistics of all chains on all ranks, as if one sampler had run them all:
/// `acceptance` is every chain's acceptance in rank order; acceptance_rate,
/// mean_accept_prob and mean_energy are means over all chains (each rank's value weighted
/// by its number of chains: every chain made the same number of steps); nonfinite is the
/// total; step_size is the chain-weighted mean of the ranks' step sizes (each rank adapts
/// its own in warm-up, so they differ slightly); steps must agree on every rank.
inline sample::ChainStats reduce_chain_stats(const Communicator& comm, const sample::ChainStats& local) {
    sample::ChainStats out;
    out.acceptance = allgather(comm, local.acceptance);
    const double m = static_cast<double>(local.acceptance.size());
    const std::vector<double> sums = allreduce(
        comm,
        {m, m * local.acceptance_rate, m * local.mean_accept_prob, m * local.mean_energy, m * local.step_size,
         static_cast<double>(local.nonfinite)},
        Op::sum);
    const std::vector<double> steps = allreduce(comm, {static_cast<double>(local.steps), -static_cast<double>(local.steps)}, Op::max);
    EMBER_CHECK(steps[0] == -steps[1], "dist::reduce_chain_stats", "the ranks ran different numbers of steps (from ",
                -steps[1], " to ", steps[0], ")");
    const double chains = sums[0];
    EMBER_CHECK(chains > 0, "dist::reduce_chain_stats", "no rank has any chain");
    out.acceptance_rate = sums[1] / chains;
    out.mean_accept_prob = sums[2] / chains;
    out.mean_energy = sums[3] / chains;
    out.step_size = sums[4] / chains;
    out.nonfinite = static_cast<std::int64_t>(sums[5]);
    out.steps = local.steps;
    return out;
}

/// ESS and split R-hat over the chains of every rank: `traces` is this rank's
/// [its chains, draws] (the same number of draws everywhere). The traces are gathered to
/// rank 0, which computes the diagnostic; every rank returns its value.
inline double ess(const Communicator& comm, const Tensor<double>& traces) {
    const Tensor<double> all = gather(comm, traces);
    return broadcast(comm, comm.is_root() ? sample::ess(all) : 0.0);
}
/// Split R-hat over the chains of every rank, as ess() does it.
inline double rhat(const Communicator& comm, const Tensor<double>& traces) {
    const Tensor<double> all = gather(comm, traces);
    return broadcast(comm, comm.is_root() ? sample::rhat(all) : 0.0);
}

}  // namespace ember::dist
