#pragma once
/// \file
/// Collectives on ember's tensors and modules:
///
///     broadcast_parameters(comm, model)   parameters and buffers from rank 0, at start
///     allreduce_gradients(comm, model)    average every gradient over the ranks, before step()
///     gather(comm, t)                     concatenate along dim 0 on rank 0 (samples, traces)
///     allreduce(comm, x, Op::mean)        scalars (losses, counters) for logging
///
/// Every rank must make the same calls in the same order with the same parameter lists:
/// these are MPI collectives. Each function checks what it cheaply can (counts and sizes
/// agree on all ranks) and throws ember::Error when they do not, instead of hanging or
/// reading past a buffer.

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "ember/autodiff/var.hpp"
#include "ember/dist/communicator.hpp"  // <mpi.h>, C API only
#include "ember/nn/module.hpp"

namespace ember::dist {

namespace detail {

template <Real T>
MPI_Datatype mpi_type() {
    if constexpr (std::is_same_v<T, float>) return MPI_FLOAT;
    else return MPI_DOUBLE;
}

inline int to_count(std::int64_t n, const char* op) {
    EMBER_CHECK(n >= 0 && n <= INT_MAX, op, n, " elements do not fit one MPI call (at most ", INT_MAX, ")");
    return static_cast<int>(n);
}

// Throws unless each of `values` is the same on every rank (one small MPI_Allreduce of
// (v, -v) with MPI_MAX gives the largest and the smallest value at once). `what` names them.
inline void check_same(const Communicator& comm, std::vector<std::int64_t> values, const char* op,
                       const std::vector<const char*>& what) {
    const std::size_t n = values.size();
    values.resize(2 * n);
    for (std::size_t i = 0; i < n; ++i) values[n + i] = -values[i];
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(2 * n), MPI_INT64_T, MPI_MAX, comm.comm()),
          "MPI_Allreduce");
    for (std::size_t i = 0; i < n; ++i)
        EMBER_CHECK(values[i] == -values[n + i], op, what[i], " differs between ranks: from ", -values[n + i], " to ",
                    values[i], "; every rank must make the same call with the same model");
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Broadcast
// ---------------------------------------------------------------------------------------

/// Overwrites `tensors` on every rank with rank `root`'s values, in place (each must be
/// contiguous: parameters and buffers are).
template <Real T>
void broadcast(const Communicator& comm, const std::vector<Tensor<T>>& tensors, int root = 0) {
    std::int64_t total = 0;
    for (const auto& t : tensors) total += t.numel();
    detail::check_same(comm, {static_cast<std::int64_t>(tensors.size()), total}, "dist::broadcast",
                       {"the number of tensors", "the total number of elements"});
    for (const auto& t : tensors) {
        EMBER_CHECK(t.is_contiguous(), "dist::broadcast", "tensor of shape ", t.shape().str(), " is not contiguous");
        detail::check(MPI_Bcast(t.data(), detail::to_count(t.numel(), "dist::broadcast"), detail::mpi_type<T>(), root,
                                comm.comm()),
                      "MPI_Bcast");
    }
}

/// Makes every rank start from rank 0's model: all parameters and all buffers (BatchNorm's
/// running statistics, spectral norm's u vectors), in the order of state_dict().
template <Real T>
void broadcast_parameters(const Communicator& comm, const nn::Module<T>& model, int root = 0) {
    std::vector<Tensor<T>> ts;
    for (const auto& [name, t] : model.state_dict()) ts.push_back(t);
    broadcast(comm, ts, root);
}

// ---------------------------------------------------------------------------------------
// Gradient averaging
// ---------------------------------------------------------------------------------------

/// Default bucket: 8 MB. Large enough that per-call latency (a few µs on shared memory,
/// tens on a network) is negligible next to the transfer, small enough that packing does
/// not double the memory of a big model at once.
inline constexpr std::size_t kDefaultBucketBytes = std::size_t{8} << 20;

/// Replaces every parameter's gradient by its mean over the ranks. With equal local batches
/// and losses that are means over the batch, this is exactly the gradient of the loss on
/// the global batch (the union of the local ones), so the optimiser step that follows is
/// the step one process would take on the whole batch.
///
/// Gradients are packed into contiguous buckets of about `bucket_bytes` (a parameter larger
/// than that gets a bucket of its own), with one MPI_Allreduce per bucket: one call for
/// every small bias would cost a latency each. A parameter whose gradient is undefined on
/// some ranks but not others contributes zeros there; one that has no gradient on any rank
/// is left undefined (the optimiser then skips it everywhere, as it would in one process).
/// The averaged gradients are new tensors (a gradient may share storage with another
/// tensor of the finished graph, so it is not overwritten in place).
template <Real T>
void allreduce_gradients(const Communicator& comm, const std::vector<Var<T>>& params,
                         std::size_t bucket_bytes = kDefaultBucketBytes) {
    const char* op = "dist::allreduce_gradients";
    std::int64_t total = 0;
    for (const auto& p : params) total += p.numel();
    detail::check_same(comm, {static_cast<std::int64_t>(params.size()), total}, op,
                       {"the number of parameters", "the total number of parameter elements"});
    if (params.empty()) return;

    // Which parameters have a gradient on at least one rank.
    std::vector<int> has(params.size());
    for (std::size_t i = 0; i < params.size(); ++i) has[i] = params[i].grad().defined() ? 1 : 0;
    detail::check(MPI_Allreduce(MPI_IN_PLACE, has.data(), detail::to_count(static_cast<std::int64_t>(has.size()), op),
                                MPI_INT, MPI_MAX, comm.comm()),
                  "MPI_Allreduce");

    const std::int64_t bucket_elems = std::max<std::int64_t>(1, static_cast<std::int64_t>(bucket_bytes / sizeof(T)));
    const T scale = T(1) / static_cast<T>(comm.size());
    std::size_t i = 0;
    while (i < params.size()) {
        // Parameters [i, j) go in this bucket.
        std::size_t j = i;
        std::int64_t n = 0;
        while (j < params.size() && (n == 0 || n + (has[j] ? params[j].numel() : 0) <= bucket_elems)) {
            if (has[j]) n += params[j].numel();
            ++j;
        }
        if (n > 0) {
            Tensor<T> buf = Tensor<T>::empty(Shape{n});
            T* q = buf.data();
            for (std::size_t k = i; k < j; ++k) {
                if (!has[k]) continue;
                const Tensor<T>& g = params[k].grad();
                const Index m = params[k].numel();
                if (!g.defined()) {
                    std::fill_n(q, m, T(0));
                } else {
                    EMBER_CHECK(g.shape() == params[k].value().shape(), op, "gradient of shape ", g.shape().str(),
                                " for a parameter of shape ", params[k].value().shape().str());
                    const Tensor<T> c = g.contiguous();
                    std::copy_n(c.data(), m, q);
                }
                q += m;
            }
            detail::check(MPI_Allreduce(MPI_IN_PLACE, buf.data(), detail::to_count(n, op), detail::mpi_type<T>(),
                                        MPI_SUM, comm.comm()),
                          "MPI_Allreduce");
            const T* r = buf.data();
            for (std::size_t k = i; k < j; ++k) {
                if (!has[k]) continue;
                const Index m = params[k].numel();
                Tensor<T> g = Tensor<T>::empty(params[k].value().shape());
                for (Index e = 0; e < m; ++e) g.data()[e] = r[e] * scale;
                params[k].set_grad(std::move(g));
                r += m;
            }
        }
        i = j;
    }
}

/// allreduce_gradients over the parameters of `model`.
template <Real T>
void allreduce_gradients(const Communicator& comm, const nn::Module<T>& model,
                         std::size_t bucket_bytes = kDefaultBucketBytes) {
    allreduce_gradients(comm, model.parameters(), bucket_bytes);
}

// ---------------------------------------------------------------------------------------
// Gather and scalar reductions
// ---------------------------------------------------------------------------------------

/// Concatenates every rank's `local` along dim 0, in rank order, on `root`; the other ranks
/// get an empty tensor. All ranks' tensors must have the same rank and the same sizes after
/// dim 0 (dim 0 may differ, including 0 rows).
template <Real T>
Tensor<T> gather(const Communicator& comm, const Tensor<T>& local, int root = 0) {
    const char* op = "dist::gather";
    const Tensor<T> c = local.contiguous();
    EMBER_CHECK(c.rank() >= 1, op, "needs a leading axis to concatenate along, shape is ", c.shape().str());
    // Each rank's shape, padded to kMaxRank + 1 values: rank, then dims.
    constexpr int W = kMaxRank + 1;
    std::vector<std::int64_t> mine(W, 0), all(static_cast<std::size_t>(W * comm.size()), 0);
    mine[0] = c.rank();
    for (int a = 0; a < c.rank(); ++a) mine[static_cast<std::size_t>(a + 1)] = c.dim(a);
    detail::check(MPI_Gather(mine.data(), W, MPI_INT64_T, all.data(), W, MPI_INT64_T, root, comm.comm()),
                  "MPI_Gather");
    std::int64_t row = 1;  // elements per row of dim 0
    for (int a = 1; a < c.rank(); ++a) row *= c.dim(a);
    std::vector<int> counts, displs;
    Shape out;
    if (comm.rank() == root) {
        std::int64_t rows = 0, offset = 0;
        for (int r = 0; r < comm.size(); ++r) {
            const std::int64_t* s = all.data() + static_cast<std::ptrdiff_t>(r) * W;
            bool same = s[0] == c.rank();
            for (int a = 1; same && a < c.rank(); ++a) same = s[a + 1] == c.dim(a);
            if (!same) {
                std::string theirs = "[";
                for (int a = 0; a < s[0]; ++a) {
                    if (a) theirs += ',';
                    theirs += std::to_string(s[a + 1]);
                }
                ::ember::detail::fail(op, "rank ", r, " sent shape ", theirs, "] but rank ", root, " has ",
                                      c.shape().str(), "; all must agree after dim 0");
            }
            const std::int64_t n = s[1] * row;
            counts.push_back(detail::to_count(n, op));
            displs.push_back(detail::to_count(offset, op));
            offset += n;
            rows += s[1];
        }
        out = c.shape();
        out[0] = rows;
    }
    Tensor<T> result = comm.rank() == root ? Tensor<T>::empty(out) : Tensor<T>();
    // A shape mismatch on root throws above, before this collective; dist::run then aborts
    // the job, so the other ranks do not wait here forever.
    detail::check(MPI_Gatherv(c.data(), detail::to_count(c.numel(), op), detail::mpi_type<T>(),
                              comm.rank() == root ? result.data() : nullptr, counts.data(), displs.data(),
                              detail::mpi_type<T>(), root, comm.comm()),
                  "MPI_Gatherv");
    return result;
}

/// How allreduce combines the ranks' values.
enum class Op { sum, mean, max, min };

/// Element-wise reduction of `values` over the ranks; every rank gets the result.
inline std::vector<double> allreduce(const Communicator& comm, std::vector<double> values, Op op = Op::sum) {
    detail::check_same(comm, {static_cast<std::int64_t>(values.size())}, "dist::allreduce", {"the number of values"});
    const MPI_Op mpi_op = op == Op::max ? MPI_MAX : op == Op::min ? MPI_MIN : MPI_SUM;
    detail::check(MPI_Allreduce(MPI_IN_PLACE, values.data(),
                                detail::to_count(static_cast<std::int64_t>(values.size()), "dist::allreduce"),
                                MPI_DOUBLE, mpi_op, comm.comm()),
                  "MPI_Allreduce");
    if (op == Op::mean)
        for (double& v : values) v /= comm.size();
    return values;
}
/// The reduction of one value over the ranks; every rank gets the result.
inline double allreduce(const Communicator& comm, double value, Op op = Op::sum) {
    return allreduce(comm, std::vector<double>{value}, op)[0];
}

/// Rank `root`'s value of `value`, on every rank.
inline double broadcast(const Communicator& comm, double value, int root = 0) {
    detail::check(MPI_Bcast(&value, 1, MPI_DOUBLE, root, comm.comm()), "MPI_Bcast");
    return value;
}

}  // namespace ember::dist
