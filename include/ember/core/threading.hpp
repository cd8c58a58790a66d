#pragma once
/// \file
/// One knob for all parallelism: ember::set_num_threads(n) sets how many threads ember's
/// kernels and matrix products use. The threads are ember's own pool (core/thread_pool.hpp):
/// work is cut into more pieces than threads and claimed piece by piece, so a thread that
/// another program delays does not hold the others back.
#include <algorithm>
#include <cstdint>
#include <thread>

#include <Eigen/Core>

#include "ember/core/thread_pool.hpp"

namespace ember {

namespace detail {
inline int& thread_count() {
    static int n = [] {
        // ember's products cut themselves into blocks for its threads; Eigen's own GEMM
        // threads (in a program built with OpenMP) would nest inside them.
        Eigen::setNbThreads(1);
        const unsigned hw = std::thread::hardware_concurrency();
        return hw == 0 ? 1 : static_cast<int>(hw);
    }();
    return n;
}
// Pieces per thread when a loop is cut: enough that the pieces of a delayed thread move to
// the others, few enough that claiming them costs nothing against the work.
inline constexpr std::int64_t kPiecesPerThread = 4;
}  // namespace detail

/// The number of threads ember's kernels use (the hardware's threads until set_num_threads).
inline int num_threads() { return detail::thread_count(); }

/// Sets the threads of ember's kernels and matrix products to `n` (at least 1).
inline void set_num_threads(int n) { detail::thread_count() = std::max(1, n); }

/// True while the calling thread runs a piece of a parallel loop: a kernel called from there
/// runs on that thread only (the loops do not nest).
inline bool in_parallel_region() { return detail::running_work_item(); }

/// Runs body(begin, end) over [0, n) cut into contiguous pieces of at least
/// `min_per_thread` indices (so small work runs inline), spread over the threads; piece
/// boundaries are multiples of `align` so SIMD loops stay aligned.
template <class Body>
void parallel_chunks(std::int64_t n, std::int64_t min_per_thread, std::int64_t align, Body&& body) {
    const std::int64_t threads = std::min<std::int64_t>(num_threads(), n / std::max<std::int64_t>(min_per_thread, 1));
    if (threads <= 1 || in_parallel_region()) {
        body(std::int64_t{0}, n);
        return;
    }
    const std::int64_t most = std::min(threads * detail::kPiecesPerThread, n / std::max<std::int64_t>(min_per_thread, 1));
    std::int64_t piece = (n + most - 1) / most;
    piece = (piece + align - 1) / align * align;
    const std::int64_t pieces = (n + piece - 1) / piece;
    auto run_piece = [&](std::int64_t i) { body(i * piece, std::min(n, (i + 1) * piece)); };
    detail::ThreadPool::instance().run(pieces, static_cast<int>(threads), detail::WorkRef(run_piece));
}

/// Runs body(i) for i in [0, n) across threads (each index independent).
template <class Body>
void parallel_for(std::int64_t n, Body&& body) {
    parallel_chunks(n, 1, 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) body(i);
    });
}

/// How many ranges to cut n items into for a sum that each range accumulates privately:
/// a few per thread, so that the ranges of a delayed thread move to the others; the count
/// depends on n and num_threads() only, so the sum comes out the same on every run.
inline int private_sum_parts(std::int64_t n) {
    if (n <= 1 || in_parallel_region()) return 1;
    return static_cast<int>(std::min<std::int64_t>(n, num_threads() * detail::kPiecesPerThread));
}

/// Runs body(i) for i in [0, n), at most num_threads() at once, each task claimed by the
/// first free thread, and rethrows the first exception a task threw. Inside the tasks
/// ember's kernels run on the task's thread only.
template <class Body>
void parallel_tasks(int n, Body&& body) {
    auto run_task = [&](std::int64_t i) { body(static_cast<int>(i)); };
    detail::ThreadPool::instance().run(n, in_parallel_region() ? 1 : num_threads(), detail::WorkRef(run_task));
}

}  // namespace ember
