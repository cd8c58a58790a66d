#pragma once
/// \file
/// A per-thread free-list allocator for the small objects every recorded operation creates
/// (graph nodes, Var handles, tensor storage headers). Recording a node then costs no trip
/// to malloc once the first training step has warmed the lists up.
#include <array>
#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace ember::detail {

class SmallObjectCache {
public:
    static constexpr std::size_t kGranule = 64, kClasses = 16;  // 64-byte aligned, up to 1 KiB
    static constexpr std::size_t kMaxPerClass = 1 << 16;

    static void* allocate(std::size_t bytes) {
        const std::size_t c = size_class(bytes);
        Lists* lists = local();
        if (c >= kClasses || !lists) return ::operator new((c + 1) * kGranule, std::align_val_t{kGranule});
        if (FreeBlock* b = lists->head[c]) {
            lists->head[c] = b->next;
            --lists->count[c];
            return b;
        }
        return ::operator new((c + 1) * kGranule, std::align_val_t{kGranule});
    }

    static void deallocate(void* p, std::size_t bytes) {
        const std::size_t c = size_class(bytes);
        Lists* lists = local();
        if (c >= kClasses || !lists || lists->count[c] >= kMaxPerClass) {
            ::operator delete(p, std::align_val_t{kGranule});
            return;
        }
        auto* b = static_cast<FreeBlock*>(p);
        b->next = lists->head[c];
        lists->head[c] = b;
        ++lists->count[c];
    }

private:
    struct FreeBlock {
        FreeBlock* next;
    };
    // A thread's lists are returned to the system when the thread ends; objects released
    // after that (e.g. by static destructors) bypass the lists.
    struct Lists {
        std::array<FreeBlock*, kClasses> head{};
        std::array<std::size_t, kClasses> count{};
        ~Lists() {
            for (FreeBlock* h : head)
                while (h) {
                    FreeBlock* next = h->next;
                    ::operator delete(h, std::align_val_t{kGranule});
                    h = next;
                }
            ended() = true;
        }
    };
    static std::size_t size_class(std::size_t bytes) { return (bytes + kGranule - 1) / kGranule - 1; }
    static bool& ended() {
        thread_local bool flag = false;  // trivially destructible: readable after ~Lists
        return flag;
    }
    static Lists* local() {
        if (ended()) return nullptr;
        thread_local Lists lists;
        return &lists;
    }
};

// std::allocator-compatible front end, for std::allocate_shared.
template <class T>
struct SmallAllocator {
    using value_type = T;
    SmallAllocator() = default;
    template <class U>
    SmallAllocator(const SmallAllocator<U>&) {}  // NOLINT(google-explicit-constructor)
    T* allocate(std::size_t n) { return static_cast<T*>(SmallObjectCache::allocate(n * sizeof(T))); }
    void deallocate(T* p, std::size_t n) { SmallObjectCache::deallocate(p, n * sizeof(T)); }
    template <class U>
    bool operator==(const SmallAllocator<U>&) const { return true; }
};

template <class T, class... Args>
std::shared_ptr<T> make_small_shared(Args&&... args) {
    return std::allocate_shared<T>(SmallAllocator<T>{}, std::forward<Args>(args)...);
}

}  // namespace ember::detail
