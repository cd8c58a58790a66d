#pragma once
/// \file
/// Mini-batches for data parallelism: every rank holds the whole data set (or the same
/// file), all ranks compute the same permutation of an epoch from the shared seed (the one
/// BatchIterator uses: Generator(seed + epoch)), and global batch i of the epoch, the rows
/// order[i·B, (i+1)·B), is cut into `size` consecutive shards of B / size rows; rank r takes
/// shard r. So
///   * the shards of one step are disjoint and their union is exactly the batch that
///     BatchIterator with batch size B would give one process at that step;
///   * no communication is needed to agree on the data;
///   * with gradients averaged over the ranks (allreduce_gradients), K processes take the
///     same optimiser steps as one process with the global batch, up to rounding.
///
/// B must be divisible by the number of ranks (equal local batches make the mean of the
/// local mean gradients the global mean). The last, incomplete batch of an epoch (without
/// drop_last) is shortened to a multiple of the number of ranks, and dropped if that leaves
/// nothing; every rank computes the same count, so all ranks always run the same number of
/// steps, which collectives require.
#include <optional>
#include <vector>

#include "ember/data/batches.hpp"

namespace ember::dist {

/// This rank's shard of every global mini-batch: the batches of BatchIterator, each cut into
/// one equal part per rank (see the file description).
template <Real T>
class ShardedBatchIterator {
public:
    using Options = typename BatchIterator<T>::Options;  ///< batch_size is the global batch

    /// rank and size as given by a Communicator (taking them as numbers keeps this class
    /// usable, and testable, without MPI calls).
    ShardedBatchIterator(int rank, int size, Tensor<T> data, std::vector<Index> labels, Options o)
        : data_(data.contiguous()), labels_(std::move(labels)), o_(o), rank_(rank), size_(size) {
        const char* op = "dist::ShardedBatchIterator";
        EMBER_CHECK(size_ >= 1 && rank_ >= 0 && rank_ < size_, op, "rank ", rank_, " out of range for ", size_, " ranks");
        EMBER_CHECK(data_.rank() >= 1, op, "data must have a leading sample axis, shape is ", data_.shape().str());
        EMBER_CHECK(o_.batch_size > 0 && o_.batch_size % size_ == 0, op, "the global batch size ", o_.batch_size,
                    " must be a positive multiple of the number of processes (", size_, ")");
        EMBER_CHECK(labels_.empty() || static_cast<Index>(labels_.size()) == data_.dim(0), op, labels_.size(),
                    " labels for ", data_.dim(0), " samples");
        start_epoch(0);
    }
    /// A sharded iterator over an unlabelled data set.
    ShardedBatchIterator(int rank, int size, Tensor<T> data, Options o)
        : ShardedBatchIterator(rank, size, std::move(data), {}, o) {}

    /// Number of rows in the data set.
    Index samples() const { return data_.dim(0); }
    /// Rows per step over all ranks (Options::batch_size).
    Index global_batch_size() const { return o_.batch_size; }
    /// Rows per step on this rank: global_batch_size() / size().
    Index local_batch_size() const { return o_.batch_size / size_; }
    /// This process's rank.
    int rank() const { return rank_; }
    /// Number of ranks.
    int size() const { return size_; }
    /// The current epoch.
    std::uint64_t epoch() const { return epoch_; }

    /// Steps per epoch, the same on every rank.
    Index batches_per_epoch() const {
        const Index full = samples() / o_.batch_size, tail = samples() % o_.batch_size;
        return full + (!o_.drop_last && tail / size_ > 0 ? 1 : 0);
    }

    /// As BatchIterator::start_epoch: epoch `e` from its batch `first_batch` (resuming).
    void start_epoch(std::uint64_t e, Index first_batch = 0) {
        EMBER_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(), "dist::ShardedBatchIterator", "batch ",
                    first_batch, " out of range for an epoch of ", batches_per_epoch(), " batches");
        epoch_ = e;
        batch_ = first_batch;
        if (o_.shuffle) {
            Generator g(o_.seed + e);
            order_ = permutation(samples(), g);
        } else {
            order_.resize(static_cast<std::size_t>(samples()));
            for (Index i = 0; i < samples(); ++i) order_[static_cast<std::size_t>(i)] = i;
        }
    }

    /// This rank's shard of the next global batch, or nothing when the epoch is over.
    std::optional<MiniBatch<T>> next() {
        if (batch_ >= batches_per_epoch()) return std::nullopt;
        const Index start = batch_ * o_.batch_size;
        const Index global = std::min(o_.batch_size, samples() - start) / size_ * size_;
        const Index local = global / size_;
        ++batch_;
        const auto first = order_.begin() + start + rank_ * local;
        return ember::detail::gather_rows(data_, labels_, std::vector<Index>(first, first + local));
    }

private:
    Tensor<T> data_;
    std::vector<Index> labels_;
    Options o_;
    int rank_, size_;
    std::vector<Index> order_;
    Index batch_ = 0;
    std::uint64_t epoch_ = 0;
};

}  // namespace ember::dist
