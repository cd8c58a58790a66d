#pragma once
/// \file
/// The threads behind parallel_chunks, parallel_for and parallel_tasks (core/threading.hpp).
///
/// A call hands the pool a number of work items; the calling thread and the workers claim
/// items one at a time from a shared counter until none is left, and the call returns when
/// every claimed item has finished. The caller never waits for a worker that has not started:
/// on a machine whose other cores are busy with other programs, a worker the scheduler has
/// not run yet simply finds no work left, and the items move to the threads that do run. (A
/// fork-join region with a barrier, as OpenMP's, waits for every thread of the team: with one
/// core taken by another process, each region then lasts until the scheduler gives the
/// waiting thread a turn, milliseconds later.)
///
/// Workers spin for a short while after their last item, so that the next region of a
/// training step (microseconds later) starts without a wake-up, then sleep in the kernel
/// (std::atomic::wait) and cost nothing.
///
/// The pool is one compiled piece of code for every kernel: the work is passed as a
/// WorkRef (a pointer and a function), so no kernel's lambda instantiates a parallel region.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <immintrin.h>
#endif

namespace ember::detail {

/// A non-owning reference to a callable run as `work(item)`: a pointer and a function, no
/// allocation. The callable must outlive the call that uses the reference.
class WorkRef {
public:
    template <class F>
    explicit WorkRef(F& f) noexcept
        : object_(static_cast<void*>(&f)), call_([](void* o, std::int64_t item) { (*static_cast<F*>(o))(item); }) {}
    /// Runs the referenced callable on work item `item`.
    void operator()(std::int64_t item) const { call_(object_, item); }

private:
    void* object_;
    void (*call_)(void*, std::int64_t);
};

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
    _mm_pause();
#elif defined(__aarch64__)
    asm volatile("yield" ::: "memory");
#endif
}

/// Waits until `value` no longer holds `old` or `stop()` is true: spins for `spin`, then
/// sleeps in the kernel (std::atomic::wait) until a notify.
template <class T, class Stop>
void spin_then_wait(const std::atomic<T>& value, T old, std::chrono::microseconds spin, Stop stop) {
    const auto until = std::chrono::steady_clock::now() + spin;
    for (int turn = 1; value.load(std::memory_order_acquire) == old; ++turn) {
        if (stop()) return;
        cpu_relax();
        if (turn % 64 == 0 && std::chrono::steady_clock::now() > until) value.wait(old, std::memory_order_acquire);
    }
}

/// True on a thread while it runs a work item: parallel calls made from inside an item run
/// on that thread (the pool does not nest).
inline bool& running_work_item() {
    thread_local bool inside = false;
    return inside;
}

class ThreadPool {
public:
    /// The process's pool (workers start when first needed).
    static ThreadPool& instance() {
        static ThreadPool pool;
        return pool;
    }

    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    ~ThreadPool() {
        stop_.store(true, std::memory_order_release);
        wake_.fetch_add(1, std::memory_order_release);
        wake_.notify_all();
        for (auto& w : workers_) w.join();
    }

    /// Runs work(i) for every i in [0, items) on the calling thread and up to `threads` - 1
    /// workers, and returns when all items have finished; rethrows the first exception an
    /// item threw (the other items still run). Runs everything on the calling thread when
    /// called from inside a work item, or while another thread's call holds the pool.
    void run(std::int64_t items, int threads, WorkRef work) {
        threads = static_cast<int>(std::min<std::int64_t>(std::min(threads, kMaxThreads), items));
        if (threads <= 1 || running_work_item()) {
            run_inline(items, work);
            return;
        }
        std::unique_lock<std::mutex> hold(submit_, std::try_to_lock);
        if (!hold.owns_lock()) {
            run_inline(items, work);
            return;
        }
        start_workers(threads - 1);
        work_ = &work;
        items_ = items;
        first_error_ = nullptr;
        unfinished_.store(items, std::memory_order_relaxed);
        // Publishing the counter releases work_ and items_ to every thread that claims an item.
        claims_.store(pack(threads, items), std::memory_order_release);
        wake_.fetch_add(1, std::memory_order_release);
        wake_.notify_all();
        claim_items(0);
        // Only items that another thread has claimed and not finished remain: spin for a
        // while, then sleep. Sleeping leaves this core idle, and an idle core takes over a
        // thread that the scheduler had set aside on a busy one, so an item whose thread was
        // preempted by another program finishes here instead of waiting for its turn.
        for (std::int64_t left; (left = unfinished_.load(std::memory_order_acquire)) != 0;)
            spin_then_wait(unfinished_, left, kCallerSpin, [] { return false; });
        work_ = nullptr;
        if (first_error_) std::rethrow_exception(first_error_);
    }

private:
    ThreadPool() = default;

    // claims_ packs the number of threads the call allows (high half) with the number of
    // items not yet claimed (low half). A thread claims by decrementing the low half with a
    // compare-exchange; success means the call it claimed from is still running, so work_
    // and items_ are that call's.
    static constexpr int kMaxThreads = 1 << 16;
    static constexpr std::uint64_t pack(int threads, std::int64_t items) {
        return (static_cast<std::uint64_t>(threads) << 32) | static_cast<std::uint64_t>(items);
    }
    // A worker spins this long for the next call before it sleeps (a training step's kernels
    // follow each other microseconds apart); the caller spins this long for the last items.
    static constexpr std::chrono::microseconds kWorkerSpin{200};
    static constexpr std::chrono::microseconds kCallerSpin{50};

    // The same contract on the calling thread alone: every item runs, as a work item, and
    // the first exception comes back after the last.
    static void run_inline(std::int64_t items, WorkRef work) {
        const bool was_inside = running_work_item();
        running_work_item() = true;
        std::exception_ptr first;
        for (std::int64_t i = 0; i < items; ++i) {
            try {
                work(i);
            } catch (...) {
                if (!first) first = std::current_exception();
            }
        }
        running_work_item() = was_inside;
        if (first) std::rethrow_exception(first);
    }

    // Thread `index` (0 = the caller) claims and runs items until none is left or the call
    // allows fewer threads than index + 1.
    void claim_items(int index) {
        std::uint64_t c = claims_.load(std::memory_order_acquire);
        for (;;) {
            const std::uint64_t left = c & 0xffffffffu;
            if (left == 0 || static_cast<int>(c >> 32) <= index) return;
            if (!claims_.compare_exchange_weak(c, c - 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
            const std::int64_t item = items_ - static_cast<std::int64_t>(left);
            running_work_item() = true;
            try {
                (*work_)(item);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_);
                if (!first_error_) first_error_ = std::current_exception();
            }
            running_work_item() = false;
            if (unfinished_.fetch_sub(1, std::memory_order_acq_rel) == 1) unfinished_.notify_all();
            c = claims_.load(std::memory_order_acquire);
        }
    }

    void start_workers(int count) {
        while (static_cast<int>(workers_.size()) < count) {
            const int index = static_cast<int>(workers_.size()) + 1;
            workers_.emplace_back([this, index] { worker(index); });
        }
    }

    void worker(int index) {
        std::uint32_t seen = wake_.load(std::memory_order_acquire);
        for (;;) {
            claim_items(index);
            // Wait for the next call: spin briefly, then sleep until wake_ changes. stop_ is
            // looked at on every turn: a worker that started after the pool's destructor
            // changed wake_ has seen the changed value and would wait for another change.
            spin_then_wait(wake_, seen, kWorkerSpin, [this] { return stop_.load(std::memory_order_acquire); });
            seen = wake_.load(std::memory_order_acquire);
            if (stop_.load(std::memory_order_acquire)) return;
        }
    }

    std::mutex submit_;  // one call at a time uses the workers
    std::vector<std::thread> workers_;
    const WorkRef* work_ = nullptr;
    std::int64_t items_ = 0;
    std::atomic<std::uint64_t> claims_{0};
    std::atomic<std::int64_t> unfinished_{0};
    std::atomic<std::uint32_t> wake_{0};
    std::atomic<bool> stop_{false};
    std::mutex error_;
    std::exception_ptr first_error_;
};

}  // namespace ember::detail
