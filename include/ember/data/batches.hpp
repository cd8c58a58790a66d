#pragma once
/// \file
/// Mini-batches over a data set held in memory: deterministic shuffling from a seed (epoch e
/// uses the permutation of Generator(seed + e), whatever the thread count), optional
/// drop_last, and the usual image transforms.
#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>
#include <vector>

#include "ember/core/random.hpp"
#include "ember/expr/expr.hpp"

namespace ember {

/// One mini-batch: the rows, their labels and their indices in the data set.
template <Real T>
struct MiniBatch {
    Tensor<T> x;                ///< rows of the data set
    std::vector<Index> labels;  ///< their labels, when the data set has labels
    std::vector<Index> rows;    ///< which rows of the data set these are
};

namespace detail {
// The mini-batch made of the given rows of `data` [n, ...] (contiguous) and their labels.
template <Real T>
MiniBatch<T> gather_rows(const Tensor<T>& data, const std::vector<Index>& labels, std::vector<Index> rows) {
    MiniBatch<T> out;
    out.rows = std::move(rows);
    const Index b = static_cast<Index>(out.rows.size()), n = data.dim(0);
    Shape s = data.shape();
    s[0] = b;
    out.x = Tensor<T>::empty(s);
    const Index row = n ? data.numel() / n : 0;
    for (Index i = 0; i < b; ++i)
        std::copy_n(data.data() + out.rows[static_cast<std::size_t>(i)] * row, row, out.x.data() + i * row);
    if (!labels.empty())
        for (Index r : out.rows) out.labels.push_back(labels[static_cast<std::size_t>(r)]);
    return out;
}
}  // namespace detail

/// Mini-batches over a data set held in memory, shuffled deterministically from a seed.
template <Real T>
class BatchIterator {
public:
    /// How the batches are formed.
    struct Options {
        /// Rows per batch.
        Index batch_size = 64;
        /// Visit the rows in a new random order every epoch (Generator(seed + epoch)).
        bool shuffle = true;
        /// Skip the last batch of an epoch when it would be smaller than batch_size.
        bool drop_last = false;
        /// Seed of the shuffling.
        std::uint64_t seed = 0;
    };

    /// Batches of the rows of `data` [n, ...] and their `labels` (one per row).
    BatchIterator(Tensor<T> data, std::vector<Index> labels, Options o) : data_(data.contiguous()), labels_(std::move(labels)), o_(o) {
        EMBER_CHECK(data_.rank() >= 1, "BatchIterator", "data must have a leading sample axis, shape is ", data_.shape().str());
        EMBER_CHECK(o_.batch_size > 0, "BatchIterator", "batch size must be positive, got ", o_.batch_size);
        EMBER_CHECK(labels_.empty() || static_cast<Index>(labels_.size()) == data_.dim(0), "BatchIterator",
                    labels_.size(), " labels for ", data_.dim(0), " samples");
        start_epoch(0);
    }
    /// Batches of an unlabelled data set.
    BatchIterator(Tensor<T> data, Options o) : BatchIterator(std::move(data), {}, o) {}

    /// Number of rows in the data set.
    Index samples() const { return data_.dim(0); }
    /// Batches in one epoch (the last one may be partial unless drop_last).
    Index batches_per_epoch() const {
        return o_.drop_last ? samples() / o_.batch_size : (samples() + o_.batch_size - 1) / o_.batch_size;
    }
    /// The current epoch.
    std::uint64_t epoch() const { return epoch_; }

    /// Restarts at the beginning of epoch `e`, or at its batch `first_batch` (for resuming a
    /// run mid-epoch: the batches that follow are the ones the interrupted run would have seen).
    void start_epoch(std::uint64_t e, Index first_batch = 0) {
        EMBER_CHECK(first_batch >= 0 && first_batch <= batches_per_epoch(), "BatchIterator", "batch ", first_batch,
                    " out of range for an epoch of ", batches_per_epoch(), " batches");
        epoch_ = e;
        pos_ = std::min(first_batch * o_.batch_size, samples());
        order_.resize(static_cast<std::size_t>(samples()));
        if (o_.shuffle) {
            Generator g(o_.seed + e);
            order_ = permutation(samples(), g);
        } else {
            for (Index i = 0; i < samples(); ++i) order_[static_cast<std::size_t>(i)] = i;
        }
    }

    /// The next batch of this epoch, or nothing when the epoch is over (call start_epoch).
    std::optional<MiniBatch<T>> next() {
        const Index n = samples(), left = n - pos_;
        if (left <= 0 || (o_.drop_last && left < o_.batch_size)) return std::nullopt;
        const Index b = std::min(o_.batch_size, left);
        std::vector<Index> rows(order_.begin() + pos_, order_.begin() + pos_ + b);
        pos_ += b;
        return detail::gather_rows(data_, labels_, std::move(rows));
    }

    /// Positions the iterator after `consumed` batches counted from the start of epoch 0
    /// (e.g.\ the steps a checkpoint has done), so that a resumed run sees the batches an
    /// uninterrupted one would have seen.
    void seek(std::int64_t consumed) {
        EMBER_CHECK(consumed >= 0, "BatchIterator", "cannot seek to batch ", consumed);
        const Index per_epoch = batches_per_epoch();
        EMBER_CHECK(per_epoch > 0 || consumed == 0, "BatchIterator", "an epoch of ", samples(), " samples has no batch of ",
                    o_.batch_size);
        if (per_epoch == 0) return start_epoch(0);
        start_epoch(static_cast<std::uint64_t>(consumed / per_epoch), static_cast<Index>(consumed % per_epoch));
    }

    /// The next batch, going on into the next epoch when this one is over: an endless stream
    /// for training loops counted in steps.
    MiniBatch<T> next_wrapping() {
        std::optional<MiniBatch<T>> b = next();
        if (!b) {
            start_epoch(epoch_ + 1);
            b = next();
        }
        EMBER_CHECK(b.has_value(), "BatchIterator", "an epoch of ", samples(), " samples has no batch of ", o_.batch_size,
                    o_.drop_last ? " (drop_last)" : "");
        return std::move(*b);
    }

private:
    Tensor<T> data_;
    std::vector<Index> labels_;
    Options o_;
    std::vector<Index> order_;
    Index pos_ = 0;
    std::uint64_t epoch_ = 0;
};

/// Pixel transforms for data stored as 0..255.
template <Real T>
Tensor<T> scale_to_unit(const Tensor<T>& pixels) {  // [0, 1]
    return Tensor<T>(pixels * T(1.0 / 255.0));
}
/// Pixels 0..255 to [-1, 1] (the range of a tanh generator).
template <Real T>
Tensor<T> scale_to_symmetric(const Tensor<T>& pixels) {  // [-1, 1]
    return Tensor<T>(pixels * T(2.0 / 255.0) - T(1));
}
/// Back from [-1, 1] (a tanh generator's output) to [0, 1] for pictures and samples.npy,
/// clamped: a model's output can stray outside the data range.
template <Real T>
Tensor<T> symmetric_to_unit(const Tensor<T>& x) {
    return Tensor<T>(clamp(x * T(0.5) + T(0.5), 0.0, 1.0));
}
/// Dynamic binarisation: each value in [0, 1] becomes 1 with that probability.
template <Real T>
Tensor<T> binarize(const Tensor<T>& unit, Generator& gen) {
    const Tensor<T> u = uniform<T>(unit.shape(), gen);
    return Tensor<T>(u < unit);
}
/// Uniform dequantisation (docs/math.md §6): (pixel + u) / 256 with u ~ U[0, 1), in [0, 1).
/// In float, 255 + u rounds to 256 when u is within 2^-17 of 1; the result is kept below 1
/// so that a logit of it stays finite.
template <Real T>
Tensor<T> dequantize(const Tensor<T>& pixels, Generator& gen) {
    const Tensor<T> u = uniform<T>(pixels.shape(), gen);
    return Tensor<T>(minimum((pixels + u) * T(1.0 / 256.0), std::nextafter(T(1), T(0))));
}

}  // namespace ember
