#pragma once
/// \file
/// 64-byte aligned tensor buffers drawn from a size-bucketed pool, so a repeated training
/// step reuses last step's buffers instead of calling malloc. Counters let tests prove how
/// many buffers an operation asked for.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace ember {

/// Alignment of every tensor buffer in bytes (one cache line, one AVX-512 register).
inline constexpr std::size_t kAlignment = 64;

/// Counters of the buffer pool (pool_stats()).
struct PoolStats {
    std::uint64_t requests = 0;       ///< buffers handed out (from the system or the pool)
    std::uint64_t system_allocs = 0;  ///< of which needed a fresh aligned_alloc
    std::size_t cached_bytes = 0;     ///< bytes currently held by the pool for reuse
};

namespace detail {

class BufferPool {
public:
    static BufferPool& instance() {
        static BufferPool* pool = new BufferPool();  // never destroyed: buffers may outlive statics
        return *pool;
    }

    void* acquire(std::size_t bytes) {
        const std::size_t size = round_up(bytes);
        {
            std::lock_guard lock(mutex_);
            ++stats_.requests;
            auto it = free_.find(size);
            if (it != free_.end() && !it->second.empty()) {
                void* p = it->second.back();
                it->second.pop_back();
                stats_.cached_bytes -= size;
                return p;
            }
            ++stats_.system_allocs;
        }
        void* p = std::aligned_alloc(kAlignment, size);
        if (!p) throw std::bad_alloc();
        return p;
    }

    void release(void* p, std::size_t bytes) {
        if (!p) return;
        const std::size_t size = round_up(bytes);
        {
            std::lock_guard lock(mutex_);
            if (stats_.cached_bytes + size <= limit_) {
                free_[size].push_back(p);
                stats_.cached_bytes += size;
                return;
            }
        }
        std::free(p);
    }

    // Returns every cached buffer to the system.
    void trim() {
        std::lock_guard lock(mutex_);
        for (auto& [size, list] : free_)
            for (void* p : list) std::free(p);
        free_.clear();
        stats_.cached_bytes = 0;
    }

    PoolStats stats() {
        std::lock_guard lock(mutex_);
        return stats_;
    }
    void set_limit(std::size_t bytes) {
        std::lock_guard lock(mutex_);
        limit_ = bytes;
    }

private:
    static std::size_t round_up(std::size_t b) {
        if (b == 0) b = 1;
        return (b + kAlignment - 1) / kAlignment * kAlignment;
    }
    std::mutex mutex_;
    std::unordered_map<std::size_t, std::vector<void*>> free_;
    PoolStats stats_;
    std::size_t limit_ = std::size_t(2) << 30;  // cache at most 2 GiB of idle buffers
};

}  // namespace detail

/// The buffer pool's counters so far.
inline PoolStats pool_stats() { return detail::BufferPool::instance().stats(); }
/// Returns every idle buffer held by the pool to the system.
inline void pool_trim() { detail::BufferPool::instance().trim(); }
/// Caps the bytes of idle buffers the pool keeps for reuse (default 2 GiB); buffers freed
/// beyond it go back to the system.
inline void set_pool_limit(std::size_t bytes) { detail::BufferPool::instance().set_limit(bytes); }

/// Owns one buffer of `size` elements: pooled, or for a few elements (scalars, small
/// vectors) held inline so that recording scalar operations never takes the pool's lock.
template <class T>
class Storage {
public:
    /// Up to this many elements live inside the Storage object itself (64 bytes' worth).
    static constexpr std::size_t kInline = kAlignment / sizeof(T);

    /// Storage for `size` elements, uninitialised.
    explicit Storage(std::size_t size)
        : data_(size <= kInline ? inline_
                                : static_cast<T*>(detail::BufferPool::instance().acquire(size * sizeof(T)))),
          size_(size) {}
    /// Returns the buffer to the pool.
    ~Storage() {
        if (data_ != inline_) detail::BufferPool::instance().release(data_, size_ * sizeof(T));
    }
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;

    /// The first element.
    T* data() { return data_; }
    /// Number of elements.
    std::size_t size() const { return size_; }

private:
    T* data_;
    std::size_t size_;
    alignas(kAlignment) T inline_[kInline];
};

}  // namespace ember
