#pragma once
/// \file
/// The replay buffer of persistent short-run chains used to train energy models with SGLD
/// (IGEBM, JEM): a store of `capacity` chain states, filled with fresh states (noise) at
/// construction. Each training iteration takes a batch of random slots, replaces each
/// with a fresh state with probability `reinit_prob` (about 5%, which keeps the buffer from
/// collapsing onto a few modes), runs SGLD from them, and pushes the results back into the
/// same slots.
///
///     sample::ReplayBuffer<float> buffer(10000, uniform_images, gen);   // init(n, gen) -> [n,1,28,28]
///     auto batch = buffer.sample(64, gen);
///     Tensor<float> neg = sample::sgld(energy, batch.states, sgld_opts, gen);
///     buffer.push(batch.indices, neg);
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/sample/energy.hpp"

namespace ember::sample {

/// A replay buffer of persistent chain states for SGLD training (see the file description).
template <Real T>
class ReplayBuffer {
public:
    /// Makes n fresh chain states [n, ...] (the same shape after the first axis every time).
    using Init = std::function<Tensor<T>(Index n, Generator& gen)>;

    /// A batch drawn from the buffer.
    struct Batch {
        std::vector<Index> indices;  ///< buffer slots the states came from (push back to these)
        Tensor<T> states;            ///< [n, ...], a copy
        std::vector<char> fresh;     ///< per state: 1 if it was re-initialised from init
    };

    /// A buffer of `capacity` states from `init`, drawn with `gen`; sample() re-initialises each
    /// drawn state with probability `reinit_prob`.
    ReplayBuffer(Index capacity, Init init, Generator& gen, double reinit_prob = 0.05)
        : init_(std::move(init)), reinit_prob_(reinit_prob) {
        EMBER_CHECK(capacity >= 1, "ReplayBuffer", "capacity must be >= 1, got ", capacity);
        EMBER_CHECK(reinit_prob >= 0 && reinit_prob <= 1, "ReplayBuffer", "reinit_prob must be in [0, 1], got ",
                    reinit_prob);
        EMBER_CHECK(static_cast<bool>(init_), "ReplayBuffer", "the init function is empty");
        store_ = fresh_states(capacity, gen).contiguous().clone();
    }

    /// n slots drawn uniformly with replacement; each state is replaced by a fresh one with
    /// probability reinit_prob (the slot keeps its old state until push()).
    Batch sample(Index n, Generator& gen) const {
        EMBER_CHECK(n >= 1, "ReplayBuffer::sample", "batch size must be >= 1, got ", n);
        Batch b;
        b.indices.resize(static_cast<std::size_t>(n));
        b.fresh.assign(static_cast<std::size_t>(n), 0);
        Shape shape = store_.shape();
        shape[0] = n;
        b.states = Tensor<T>::empty(shape);
        const Tensor<double> u = uniform<double>(Shape{2 * n}, gen);
        Index fresh_count = 0;
        for (Index i = 0; i < n; ++i) {
            const auto k = static_cast<std::size_t>(i);
            b.indices[k] = std::min(capacity() - 1, static_cast<Index>(u.data()[i] * static_cast<double>(capacity())));
            b.fresh[k] = u.data()[n + i] < reinit_prob_;
            fresh_count += b.fresh[k];
            copy_slot(store_, b.indices[k], b.states, i);
        }
        if (fresh_count > 0) {
            const Tensor<T> fresh = fresh_states(fresh_count, gen);
            Index j = 0;
            for (Index i = 0; i < n; ++i)
                if (b.fresh[static_cast<std::size_t>(i)]) copy_slot(fresh, j++, b.states, i);
        }
        return b;
    }

    /// Writes states[i] into slot indices[i].
    void push(const std::vector<Index>& indices, const Tensor<T>& states) {
        Shape expected = store_.shape();
        expected[0] = static_cast<Index>(indices.size());
        EMBER_CHECK(states.defined() && states.shape() == expected, "ReplayBuffer::push", "expected states of shape ",
                    expected.str(), " for ", indices.size(), " indices, got ",
                    states.defined() ? states.shape().str() : std::string("an undefined tensor"));
        const Tensor<T> s = states.contiguous();
        for (std::size_t i = 0; i < indices.size(); ++i) {
            EMBER_CHECK(indices[i] >= 0 && indices[i] < capacity(), "ReplayBuffer::push", "index ", indices[i],
                        " is outside the buffer of capacity ", capacity());
            copy_slot(s, static_cast<Index>(i), store_, indices[i]);
        }
    }

    /// Number of slots.
    Index capacity() const { return store_.dim(0); }
    /// Probability that sample() replaces a drawn state by a fresh one.
    double reinit_prob() const { return reinit_prob_; }
    /// All stored states [capacity, ...]: samples to look at, or a tensor to checkpoint.
    const Tensor<T>& states() const { return store_; }

private:
    Tensor<T> fresh_states(Index n, Generator& gen) const {
        Tensor<T> t = init_(n, gen);
        EMBER_CHECK(t.defined() && t.rank() >= 1 && t.dim(0) == n, "ReplayBuffer", "init(", n,
                    ", gen) must return a batch of ", n, " states, got ",
                    t.defined() ? t.shape().str() : std::string("an undefined tensor"));
        if (store_.defined()) {
            Shape expected = store_.shape();
            expected[0] = n;
            EMBER_CHECK(t.shape() == expected, "ReplayBuffer", "init returned states of shape ", t.shape().str(),
                        ", but the buffer holds ", expected.str());
        }
        return t.contiguous();
    }
    static void copy_slot(const Tensor<T>& from, Index i, const Tensor<T>& to, Index j) {
        const Index d = from.numel() / from.dim(0);
        std::copy_n(from.data() + i * d, d, to.data() + j * d);
    }

    Init init_;
    double reinit_prob_;
    Tensor<T> store_;
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_REPLAY_BUFFER_INSTANCES(X, T) \
    X template class ReplayBuffer<T>;
EMBER_EXTERN_INSTANCES(EMBER_REPLAY_BUFFER_INSTANCES)

}  // namespace ember::sample
