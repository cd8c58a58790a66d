#pragma once
/// \file
/// One knob for all parallelism: ember::set_num_threads(n) sets the threads of our own
/// kernels (OpenMP) and of Eigen's GEMM.
#include <algorithm>
#include <cstdint>
#include <exception>

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace ember {

namespace detail {
inline int& thread_count() {
    static int n = [] {
#ifdef _OPENMP
        return omp_get_max_threads();
#else
        return 1;
#endif
    }();
    return n;
}
}  // namespace detail

/// The number of threads ember's kernels use (OpenMP's default until set_num_threads).
inline int num_threads() { return detail::thread_count(); }

/// Sets the threads of ember's own kernels (OpenMP) and of Eigen's GEMM to `n` (at least 1).
inline void set_num_threads(int n) {
    n = std::max(1, n);
    detail::thread_count() = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    Eigen::setNbThreads(n);
}

/// True inside a parallel region: a kernel called from a task of parallel_tasks runs on
/// its caller's thread only (OpenMP does not nest here, so a parallel region there would
/// only pay its start-up cost).
inline bool in_parallel_region() {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return false;
#endif
}

/// Runs body(begin, end) over [0, n) split into contiguous chunks, one per thread; chunk
/// boundaries are multiples of `align` so SIMD loops stay aligned. Small work runs inline.
template <class Body>
void parallel_chunks(std::int64_t n, std::int64_t min_per_thread, std::int64_t align, Body&& body) {
    int threads = static_cast<int>(std::min<std::int64_t>(num_threads(), n / std::max<std::int64_t>(min_per_thread, 1)));
    if (threads <= 1 || in_parallel_region()) {
        body(std::int64_t{0}, n);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const std::int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        std::int64_t chunk = (n + nt - 1) / nt;
        chunk = (chunk + align - 1) / align * align;
        const std::int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
        if (b < e) body(b, e);
    }
#else
    body(std::int64_t{0}, n);
#endif
}

/// Runs body(i) for i in [0, n) across threads (each index independent).
template <class Body>
void parallel_for(std::int64_t n, Body&& body) {
    const int threads = static_cast<int>(std::min<std::int64_t>(num_threads(), n));
    if (threads <= 1 || in_parallel_region()) {
        for (std::int64_t i = 0; i < n; ++i) body(i);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
    for (std::int64_t i = 0; i < n; ++i) body(i);
#else
    for (std::int64_t i = 0; i < n; ++i) body(i);
#endif
}

/// Runs body(i) for i in [0, n), each task on its own thread (up to num_threads() at once),
/// and rethrows the first exception a task threw: an exception must not leave an OpenMP
/// region. Inside the tasks ember's kernels and Eigen's GEMM run single-threaded.
template <class Body>
void parallel_tasks(int n, Body&& body) {
    const int threads = in_parallel_region() ? 1 : std::min(num_threads(), n);
    if (threads <= 1) {
        for (int i = 0; i < n; ++i) body(i);
        return;
    }
    std::exception_ptr first_error;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static, 1)
#endif
    for (int i = 0; i < n; ++i) {
        try {
            body(i);
        } catch (...) {
#ifdef _OPENMP
#pragma omp critical(ember_parallel_tasks_error)
#endif
            if (!first_error) first_error = std::current_exception();
        }
    }
    if (first_error) std::rethrow_exception(first_error);
}

}  // namespace ember
