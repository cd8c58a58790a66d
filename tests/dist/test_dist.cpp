// Tests of ember::dist, run under MPI by ctest (tests/dist/CMakeLists.txt):
//   mpirun -np 2 test_dist              every check below, on 2 processes
//   mpirun -np 1 test_dist              the same on 1 process (collectives degenerate)
//   mpirun -np 2 test_dist --throw-on-rank 1
//                                       rank 1 throws while rank 0 waits in a collective;
//                                       the job must end non-zero with "rank 1: ..." (no hang)
//
// Not doctest: several processes print at once, and every check must be reached by every
// rank in the same order (they contain collectives). Each rank counts its failures; the
// counts are summed at the end and rank 0 prints the verdict.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ember/dist/dist.hpp>
#include <ember/ember.hpp>
#include <set>
#include <string>
#include <vector>

using namespace ember;
namespace dd = ember::dist;

namespace {

int failures = 0;
int my_rank = 0;

#define DIST_CHECK(cond, ...)                                                      \
    do {                                                                           \
        if (!(cond)) {                                                             \
            ++failures;                                                            \
            std::fprintf(stderr, "rank %d: FAILED %s:%d: %s ", my_rank, __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                     \
            std::fprintf(stderr, "\n");                                            \
        }                                                                          \
    } while (0)

template <class F>
bool throws_error(F&& f) {
    try {
        f();
    } catch (const ember::Error&) {
        return true;
    }
    return false;
}

// ---- (4) broadcast, gather, scalar reductions, gradient averaging ------------------------
void test_collectives(const dd::Communicator& comm) {
    const int R = comm.rank(), K = comm.size();

    // Parameters and buffers: every rank starts different, all end with rank 0's values.
    {
        Generator init(100 + static_cast<std::uint64_t>(R));
        nn::Sequential<double> m;
        m.add<nn::Linear>(3, 4, init);
        m.add<nn::BatchNorm1d>(4);
        for (auto& [name, b] : m.named_buffers()) b.fill(static_cast<double>(R + 1));
        Generator init0(100);
        nn::Sequential<double> want;
        want.add<nn::Linear>(3, 4, init0);
        want.add<nn::BatchNorm1d>(4);
        for (auto& [name, b] : want.named_buffers()) b.fill(1.0);
        dd::broadcast_parameters(comm, m);
        const auto got = m.state_dict(), ref = want.state_dict();
        DIST_CHECK(got.size() == ref.size() && got.size() >= 4, "state dict sizes %zu vs %zu", got.size(), ref.size());
        for (std::size_t i = 0; i < got.size() && i < ref.size(); ++i)
            for (Index e = 0; e < ref[i].second.numel(); ++e)
                DIST_CHECK(got[i].second.data()[e] == ref[i].second.data()[e], "%s[%lld]: %g, rank 0 has %g",
                           got[i].first.c_str(), static_cast<long long>(e), got[i].second.data()[e],
                           ref[i].second.data()[e]);
    }

    // Gather: rank r sends r+1 rows of 3 values 100 r + i.
    {
        Tensor<float> local = Tensor<float>::empty(Shape{R + 1, 3});
        for (Index i = 0; i < local.numel(); ++i) local.data()[i] = static_cast<float>(100 * R + i);
        const Tensor<float> all = dd::gather(comm, local);
        if (comm.is_root()) {
            DIST_CHECK(all.shape() == (Shape{K * (K + 1) / 2, 3}), "gathered shape %s", all.shape().str().c_str());
            Index row = 0;
            for (int r = 0; r < K && all.numel() > 0; ++r)
                for (Index i = 0; i < (r + 1) * 3; ++i, ++row)
                    DIST_CHECK(all.data()[row] == static_cast<float>(100 * r + i), "element %lld is %g",
                               static_cast<long long>(row), all.data()[row]);
        } else {
            DIST_CHECK(!all.defined(), "non-root got a tensor of %lld elements", static_cast<long long>(all.numel()));
        }
    }

    // Scalar reductions of r + 1.
    {
        const double v = R + 1;
        DIST_CHECK(dd::allreduce(comm, v, dd::Op::sum) == K * (K + 1) / 2.0, "sum");
        DIST_CHECK(dd::allreduce(comm, v, dd::Op::mean) == (K + 1) / 2.0, "mean");
        DIST_CHECK(dd::allreduce(comm, v, dd::Op::max) == K, "max");
        DIST_CHECK(dd::allreduce(comm, v, dd::Op::min) == 1, "min");
        DIST_CHECK(dd::broadcast(comm, v) == 1, "broadcast of a scalar");
    }

    // Gradient averaging in float, with buckets of 16 bytes (4 floats) so that several
    // buckets are used and a 10-element parameter overflows one: rank r's gradients are
    // (r + 1)·(i + 1), so the mean is (K + 1)/2 · (i + 1). p1 has a gradient on rank 0 only
    // (the others contribute zeros: mean g/K); p3 has none anywhere and must stay undefined.
    for (std::size_t bucket : {std::size_t{16}, dd::kDefaultBucketBytes}) {
        std::vector<Var<float>> ps;
        for (Index n : {3, 2, 10, 5, 1}) ps.emplace_back(Tensor<float>::zeros(Shape{n}), true);
        for (std::size_t k = 0; k < ps.size(); ++k) {
            if (k == 3 || (k == 1 && R != 0)) continue;
            Tensor<float> g = Tensor<float>::empty(ps[k].value().shape());
            for (Index i = 0; i < g.numel(); ++i) g.data()[i] = static_cast<float>((R + 1) * (i + 1));
            ps[k].set_grad(g);
        }
        dd::allreduce_gradients(comm, ps, bucket);
        for (std::size_t k = 0; k < ps.size(); ++k) {
            if (k == 3) {
                DIST_CHECK(!ps[k].grad().defined(), "parameter without gradients got one");
                continue;
            }
            DIST_CHECK(ps[k].grad().numel() == ps[k].numel(), "parameter %zu has no averaged gradient", k);
            for (Index i = 0; i < ps[k].grad().numel(); ++i) {
                // Small integers and halves: exact in float whatever the summation order.
                const float want = k == 1 ? static_cast<float>(i + 1) / static_cast<float>(K)
                                          : static_cast<float>(K + 1) / 2.0f * static_cast<float>(i + 1);
                DIST_CHECK(std::fabs(ps[k].grad().data()[i] - want) <= 1e-6f * want, "param %zu [%lld]: %g, want %g", k,
                           static_cast<long long>(i), ps[k].grad().data()[i], want);
            }
        }
    }
}

// ---- (3) the sharded iterator ----------------------------------------------------------
void test_sharding(const dd::Communicator& comm) {
    // Without MPI calls: every world size 1..4 on N = 50 rows, global batch 12, with and
    // without drop_last, must cut exactly the batches BatchIterator gives one process
    // (shortened to a multiple of the world size), into disjoint equal shards.
    const Index N = 50, B = 12;
    Tensor<double> data = Tensor<double>::empty(Shape{N, 2});
    for (Index i = 0; i < 2 * N; ++i) data.data()[i] = static_cast<double>(i / 2);  // row i holds i
    for (bool drop : {true, false})
        for (int K : {1, 2, 3, 4}) {
            const BatchIterator<double>::Options o{.batch_size = B, .shuffle = true, .drop_last = drop, .seed = 5};
            std::vector<dd::ShardedBatchIterator<double>> its;
            for (int r = 0; r < K; ++r) its.emplace_back(r, K, data, o);
            BatchIterator<double> one(data, o);
            for (std::uint64_t e : {0u, 3u}) {
                for (auto& it : its) it.start_epoch(e);
                one.start_epoch(e);
                Index steps = 0;
                while (auto whole = one.next()) {
                    const Index keep = static_cast<Index>(whole->rows.size()) / K * K;
                    if (keep == 0) break;
                    std::vector<Index> joined;
                    for (auto& it : its) {
                        auto part = it.next();
                        DIST_CHECK(part.has_value(), "K=%d: a rank ran out of batches at step %lld", K,
                                   static_cast<long long>(steps));
                        if (!part) return;
                        DIST_CHECK(static_cast<Index>(part->rows.size()) == keep / K, "K=%d local batch %zu", K,
                                   part->rows.size());
                        for (std::size_t i = 0; i < part->rows.size(); ++i)
                            DIST_CHECK(part->x.data()[2 * i] == static_cast<double>(part->rows[i]),
                                       "row %lld copied wrongly", static_cast<long long>(part->rows[i]));
                        joined.insert(joined.end(), part->rows.begin(), part->rows.end());
                    }
                    DIST_CHECK(std::equal(joined.begin(), joined.end(), whole->rows.begin()),
                               "K=%d step %lld: the shards are not the one-process batch", K,
                               static_cast<long long>(steps));
                    ++steps;
                }
                for (auto& it : its) {
                    DIST_CHECK(!it.next().has_value(), "K=%d: a rank has more batches than the others", K);
                    DIST_CHECK(it.batches_per_epoch() == steps, "K=%d: %lld batches per epoch, counted %lld", K,
                               static_cast<long long>(it.batches_per_epoch()), static_cast<long long>(steps));
                }
            }
        }
    DIST_CHECK(throws_error([&] { dd::ShardedBatchIterator<double>(0, 2, data, {.batch_size = 5}); }),
               "a global batch not divisible by the number of ranks must be refused");

    // Under MPI: over one epoch of N = 48 rows (4 batches of 12), the real ranks' rows are
    // disjoint and cover every row.
    const Index M = 48;
    dd::ShardedBatchIterator<double> it(comm.rank(), comm.size(), data.slice(0, 0, M),
                                        {.batch_size = B, .shuffle = true, .drop_last = true, .seed = 9});
    std::vector<double> mine;
    while (auto b = it.next())
        for (Index r : b->rows) mine.push_back(static_cast<double>(r));
    const auto rows = dd::allgather(comm, mine);
    const std::set<double> unique(rows.begin(), rows.end());
    DIST_CHECK(rows.size() == static_cast<std::size_t>(M) && unique.size() == static_cast<std::size_t>(M) &&
                   *unique.begin() == 0 && *unique.rbegin() == M - 1,
               "%zu rows, %zu distinct: not a partition of 0..%lld", rows.size(), unique.size(),
               static_cast<long long>(M - 1));
}

// ---- (1) data-parallel training equals one process with the combined batch --------------
struct Trained {
    std::vector<Tensor<double>> params;
};

// A small MLP regression y = sin(x·w) trained with Adam for `steps` steps on data
// [N, 5 inputs | 1 target]. `shard` = use ShardedBatchIterator with (rank, size),
// `average` = allreduce_gradients before each step.
Trained train_mlp(const dd::Communicator* comm, int rank, int size, bool average, std::uint64_t init_seed,
                  int steps) {
    const Index N = 48, B = 12;
    Generator gdata(7);
    Tensor<double> data = normal<double>(Shape{N, 6}, gdata);
    for (Index i = 0; i < N; ++i) {
        double s = 0;
        for (Index j = 0; j < 5; ++j) s += data.data()[i * 6 + j] * (0.3 * static_cast<double>(j) - 0.5);
        data.data()[i * 6 + 5] = std::sin(s);
    }
    Generator init(init_seed);
    nn::Sequential<double> mlp;
    mlp.add<nn::Linear>(5, 16, init);
    mlp.add<nn::Tanh>();
    mlp.add<nn::Linear>(16, 1, init);
    if (comm) dd::broadcast_parameters(*comm, mlp);
    Adam<double> opt(mlp.parameters(), {.lr = 0.05});
    dd::ShardedBatchIterator<double> it(rank, size, data, {.batch_size = B, .shuffle = true, .drop_last = true, .seed = 3});
    for (int s = 0; s < steps; ++s) {
        auto b = it.next();
        if (!b) {
            it.start_epoch(it.epoch() + 1);
            b = it.next();
        }
        const Tensor<double> x = b->x.slice(1, 0, 5).contiguous(), y = b->x.slice(1, 5, 6).contiguous();
        const Var<double> pred = mlp(Var<double>(x));
        const Var<double> loss = mean(Var<double>(square(pred - Var<double>(y))));
        opt.zero_grad();
        backward(loss);
        if (average) dd::allreduce_gradients(*comm, mlp);
        opt.step();
    }
    Trained t;
    for (auto& p : mlp.parameters()) t.params.push_back(p.value().clone());
    return t;
}

double max_diff(const Trained& a, const Trained& b) {
    double d = 0;
    for (std::size_t k = 0; k < a.params.size(); ++k)
        for (Index i = 0; i < a.params[k].numel(); ++i)
            d = std::max(d, std::fabs(a.params[k].data()[i] - b.params[k].data()[i]));
    return d;
}

void test_data_parallel(const dd::Communicator& comm) {
    const int steps = 10;  // 2.5 epochs: crosses epoch boundaries (new permutations)
    // Every rank initialises differently (seed 100 + rank); broadcast_parameters makes them
    // start from rank 0's, i.e. seed 100, which is what the one-process reference uses.
    const Trained dist = train_mlp(&comm, comm.rank(), comm.size(), true, 100 + static_cast<std::uint64_t>(comm.rank()), steps);
    const Trained one = train_mlp(nullptr, 0, 1, false, 100, steps);
    // Tolerance: the two runs differ only in summation order (each rank sums the weight
    // gradient over its rows and MPI adds the ranks' sums; one process sums all rows), so
    // each gradient differs by a few ulps (~1e-16 relative, values O(1)). Ten Adam steps of
    // lr 0.05 on a smooth loss do not amplify that by more than a few orders of magnitude,
    // so 1e-10 leaves ample margin, while any real mistake (a wrong shard, a sum instead of
    // a mean, a missed reduction) moves parameters by O(lr) = 1e-2: see the control below.
    const double tol = 1e-10;
    const double d = max_diff(dist, one);
    DIST_CHECK(d <= tol, "data-parallel run differs from the one-process run by %.3g (tolerance %g)", d, tol);
    // All ranks hold the same parameters.
    for (const auto& p : dist.params) {
        const Tensor<double> all = dd::gather(comm, p.reshape(Shape{1, p.numel()}));
        if (comm.is_root())
            for (int r = 1; r < comm.size(); ++r)
                for (Index i = 0; i < p.numel(); ++i)
                    DIST_CHECK(std::fabs(all.data()[r * p.numel() + i] - all.data()[i]) <= tol,
                               "rank %d's parameters differ from rank 0's", r);
    }
    // Control: without averaging (each rank trains on its own shard only) the result must
    // be far from the reference, or this test could not see a broken reduction.
    if (comm.size() > 1) {
        const Trained local = train_mlp(&comm, comm.rank(), comm.size(), false, 100 + static_cast<std::uint64_t>(comm.rank()), steps);
        const double dl = max_diff(local, one);
        DIST_CHECK(dl > 1e3 * tol, "without gradient averaging the run should differ, but only by %.3g", dl);
    }
    if (comm.is_root()) std::printf("data-parallel MLP: max |Δparam| vs one process = %.3g over %d Adam steps\n", d, steps);
}

// ---- samplers: per-rank seeds, statistics and diagnostics over all chains ----------------
void test_sampling(const dd::Communicator& comm) {
    const int R = comm.rank(), K = comm.size();
    DIST_CHECK(dd::rank_seed(7, 0) == 7 && dd::rank_seed(7, 1) != dd::rank_seed(7, 0) + 1, "rank seeds");

    // ChainStats: rank r has r + 1 chains, each with acceptance 0.1 (r + 1).
    sample::ChainStats local;
    local.acceptance.assign(static_cast<std::size_t>(R + 1), 0.1 * (R + 1));
    local.acceptance_rate = local.mean_accept_prob = 0.1 * (R + 1);
    local.mean_energy = R;
    local.step_size = 1;
    local.steps = 20;
    local.nonfinite = R;
    const sample::ChainStats all = dd::reduce_chain_stats(comm, local);
    double chains = 0, acc = 0;
    for (int r = 0; r < K; ++r) chains += r + 1, acc += (r + 1) * 0.1 * (r + 1);
    DIST_CHECK(all.acceptance.size() == static_cast<std::size_t>(chains), "%zu chains", all.acceptance.size());
    DIST_CHECK(std::fabs(all.acceptance_rate - acc / chains) < 1e-12, "acceptance rate %g, want %g", all.acceptance_rate,
               acc / chains);
    DIST_CHECK(all.nonfinite == K * (K - 1) / 2 && all.steps == 20, "nonfinite %lld", static_cast<long long>(all.nonfinite));

    // R-hat over all ranks' chains: i.i.d. normal traces (4 chains x 500 draws per rank,
    // from the rank's own seed) agree, R-hat ≈ 1 (its sampling spread here is ~0.005);
    // shifting rank 1's chains by 3 standard deviations must push it far above 1.1.
    Generator g(dd::rank_seed(11, R));
    Tensor<double> traces = normal<double>(Shape{4, 500}, g);
    const double r_same = dd::rhat(comm, traces), e_same = dd::ess(comm, traces);
    DIST_CHECK(std::fabs(r_same - 1) < 0.02, "R-hat of agreeing chains is %g", r_same);
    DIST_CHECK(e_same > 0.5 * 4 * 500 * K, "ESS of independent draws is %g of %d", e_same, 4 * 500 * K);
    if (K > 1) {
        if (R == 1) traces = Tensor<double>(traces + 3.0);
        const double r_shift = dd::rhat(comm, traces);
        DIST_CHECK(r_shift > 1.1, "R-hat with one rank's chains shifted is only %g", r_shift);
    }
}

}  // namespace

int main(int argc, char** argv) {
    int throw_on = -1;
    for (int i = 1; i + 1 < argc; ++i)
        if (std::strcmp(argv[i], "--throw-on-rank") == 0) throw_on = std::atoi(argv[i + 1]);
    return dd::run(argc, argv, [&](dd::Communicator& comm) {
        my_rank = comm.rank();
        if (throw_on >= 0) {
            // Rank `throw_on` fails; the others wait in collectives it never joins. Without
            // dist::run's MPI_Abort they would hang until the ctest time-out.
            if (comm.rank() == throw_on)
                throw ember::Error("deliberate failure on rank " + std::to_string(throw_on) +
                                   " while the others wait in a collective");
            comm.barrier();
            dd::allreduce(comm, 1.0);
            return 0;
        }
        set_num_threads(1);
        test_collectives(comm);
        test_sharding(comm);
        test_data_parallel(comm);
        test_sampling(comm);
        const double total = dd::allreduce(comm, static_cast<double>(failures));
        if (comm.is_root())
            std::printf("test_dist: %d process(es): %s (%g failed checks)\n", comm.size(), total == 0 ? "OK" : "FAILED",
                        total);
        return total == 0 ? 0 : 1;
    });
}
