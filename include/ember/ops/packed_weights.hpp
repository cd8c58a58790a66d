#pragma once
/// \file
/// Weights packed once for the matrix kernel and reused while a ConstantWeights scope
/// promises that they do not change.
///
/// A GEMM copies ("packs") both factors into the panel layout of its kernel on every call.
/// In a Linear layer applied to a few dozen rows, such as the chains of a sampler, the
/// weight is the large factor. Re-reading it from L3 and re-packing it was about a quarter
/// of a latent MALA step. Inside a ConstantWeights scope, linear() packs a weight once per
/// direction (x·Wᵀ forward, g·W backward) and keeps the panels. Each later call packs only
/// its small input and runs the kernel of gemm_panels.hpp on the stored panels.
///
/// The promise: while the scope is open, no weight that linear() reads is written in place.
/// Every sampler opens one for the length of run(), warmup() and sgld(): a target that
/// changed during a run would not be one target. Only leaf weights are cached: a weight
/// computed in the graph, such as spectral norm's W/σ, is a new tensor at every call. A
/// cached entry keeps its weight's buffer alive, so its address cannot be reused by another
/// tensor while the scope is open (a weight computed outside the graph, from parameters that
/// do not require grad, is a leaf: cached at every call, correct but wasted, up to the cap).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "ember/autodiff/var.hpp"
#include "ember/ops/gemm_panels.hpp"

namespace ember {

namespace detail {

// The two products a Linear layer makes with its weight W [out, in].
enum class WeightUse { forward, backward };  // y = x·Wᵀ, dx = g·W

// Above this many input rows, packing the weight per call is amortised anyway, and the
// per-call panels of the input would no longer fit in L2.
inline constexpr Index kMaxPackedRows = 512;
// A scope packs at most this much (and keeps as much of source weights alive): far more
// than the networks samplers run here (8.6 MB for the MLP GAN's G and D in both directions);
// a leaf weight created anew at every call would otherwise grow the cache without bound.
inline constexpr std::size_t kMaxPackedBytes = std::size_t{64} << 20;

// The left factor A (rows x depth) of C = A·B in column-major terms, as row panels
// (pack_row_panels):
//   forward:  yᵀ [out, N] = W [out, in] · xᵀ    (A = W)
//   backward: dxᵀ [in, N] = Wᵀ [in, out] · gᵀ   (A = Wᵀ)
template <Real T>
struct PackedWeight {
    Tensor<T> source;  // keeps the weight's buffer, and so its address, alive
    Index rows = 0, depth = 0;
    PanelBuffer<T> panels;
};

// C += A·B with A packed: C is column-major rows x cols with leading dimension A.rows,
// B is depth x cols, column-major with leading dimension ldb (a row-major [cols, depth]
// matrix read as its transpose). Only B is packed here, one depth chunk at a time.
template <Real T>
void gemm_packed(const PackedWeight<T>& a, const T* b, Index ldb, Index cols, T* c) {
    const Index padded_rows = round_up(a.rows, GemmTile<T>::rows);
    for_packed_depth_chunks(b, Index{1}, ldb, cols, a.depth, [&](Index k0, Index kc, const T* b_panels) {
        gemm_panels(a.panels.data() + k0 * padded_rows, b_panels, a.rows, cols, kc, c, a.rows);
    });
}

// The packed weights of one ConstantWeights scope, shared by the threads it was handed to.
class WeightPackCache {
public:
    // The packed form of `weight` [out, in] (contiguous, row-major) for `use`, packing it on
    // first sight; nullptr when the cache is full.
    template <Real T>
    const PackedWeight<T>* find_or_pack(const Tensor<T>& weight, WeightUse use) {
        const Key key{weight.data(), weight.dim(0), weight.dim(1), use};
        std::lock_guard lock(mutex_);
        auto& entries = table<T>();
        if (auto it = entries.find(key); it != entries.end()) return it->second.get();
        const std::size_t bytes = static_cast<std::size_t>(weight.numel()) * sizeof(T);
        if (bytes_ + bytes > kMaxPackedBytes) return nullptr;
        auto a = std::make_unique<PackedWeight<T>>();
        a->source = weight;
        const Index out = weight.dim(0), in = weight.dim(1);
        if (use == WeightUse::forward) {  // A = W: rows are W's rows
            a->rows = out, a->depth = in;
            pack_row_panels(weight.data(), out, in, in, Index{1}, a->panels);
        } else {  // A = Wᵀ: rows are W's columns
            a->rows = in, a->depth = out;
            pack_row_panels(weight.data(), in, out, Index{1}, in, a->panels);
        }
        bytes_ += bytes;
        ++packs_;
        return entries.emplace(key, std::move(a)).first->second.get();
    }

    std::int64_t packs() {
        std::lock_guard lock(mutex_);
        return packs_;
    }

private:
    using Key = std::tuple<const void*, Index, Index, WeightUse>;
    template <Real T>
    std::map<Key, std::unique_ptr<PackedWeight<T>>>& table() {
        if constexpr (std::is_same_v<T, float>) return floats_;
        else return doubles_;
    }
    std::mutex mutex_;
    std::map<Key, std::unique_ptr<PackedWeight<float>>> floats_;
    std::map<Key, std::unique_ptr<PackedWeight<double>>> doubles_;
    std::size_t bytes_ = 0;
    std::int64_t packs_ = 0;
};

// The cache of the most recently opened scope on this thread, or nullptr.
inline WeightPackCache*& active_weight_cache() {
    thread_local WeightPackCache* cache = nullptr;
    return cache;
}

// Makes `cache` this thread's active cache until destroyed: how a scope reaches the tasks
// that parallel_tasks runs on other threads.
class UseWeightCache {
public:
    explicit UseWeightCache(WeightPackCache* cache) : previous_(active_weight_cache()) { active_weight_cache() = cache; }
    ~UseWeightCache() { active_weight_cache() = previous_; }
    UseWeightCache(const UseWeightCache&) = delete;
    UseWeightCache& operator=(const UseWeightCache&) = delete;

private:
    WeightPackCache* previous_;
};

// The packed form of a Linear layer's weight for a product with `rows` input rows, or
// nullptr when no scope is open or the packed path does not apply: a weight that is
// computed (not a leaf) or not contiguous row-major, an empty product, many rows, or a
// weight with fewer outputs than half the kernel's register tile. An energy's last layer
// has one output: its forward product is a matrix-vector product, of which the kernel
// would compute a whole tile of GemmTile::rows rows (47 of 48 wasted) where Eigen's GEMV
// computes one.
template <Real T>
const PackedWeight<T>* packed_weight(const Var<T>& weight, WeightUse use, Index rows) {
    WeightPackCache* cache = active_weight_cache();
    if (!cache || !weight.is_leaf() || rows < 1 || rows > kMaxPackedRows) return nullptr;
    const Tensor<T>& w = weight.value();
    if (w.rank() != 2 || w.numel() == 0 || w.strides()[1] != 1 || w.strides()[0] != w.dim(1)) return nullptr;
    if (2 * w.dim(0) < GemmTile<T>::rows) return nullptr;
    return cache->find_or_pack(w, use);
}

}  // namespace detail

/// A scope in which the weights of linear layers are constant, so each is packed for the
/// matrix kernel once and then reused (see the top of this file). Scopes nest: an inner one
/// uses the outer one's cache. Hold one around a loop of sampler calls, e.g. run(1) in a
/// benchmark, to keep the packing across the calls.
class ConstantWeights {
public:
    ConstantWeights() {
        if (!detail::active_weight_cache()) {
            own_ = std::make_unique<detail::WeightPackCache>();
            use_.emplace(own_.get());
        }
    }
    ConstantWeights(const ConstantWeights&) = delete;
    ConstantWeights& operator=(const ConstantWeights&) = delete;

    /// Weights packed so far by the cache this scope uses (for tests).
    std::int64_t packs() const { return detail::active_weight_cache() ? detail::active_weight_cache()->packs() : 0; }

private:
    std::unique_ptr<detail::WeightPackCache> own_;
    std::optional<detail::UseWeightCache> use_;
};

}  // namespace ember

