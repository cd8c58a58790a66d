#pragma once
/// \file
/// The MPI communicator behind ember's data parallelism: RAII initialisation and
/// finalisation, rank and size, and dist::run(), which turns an exception on any rank into
/// the end of the whole job.
///
///     int main(int argc, char** argv) {
///         return ember::dist::run(argc, argv, [&](ember::dist::Communicator& comm) {
///             ... comm.rank(), comm.size(), comm.is_root() ...
///             return 0;
///         });
///     }
///
/// Why MPI and not sockets of our own: research clusters already run Open MPI, with its
/// launcher (mpirun/srun), its process placement and its fast shared-memory and network
/// transports; ember only issues a few collectives per step.
///
/// Threads: ember's kernels run on its thread pool, but only the thread that created the
/// Communicator calls MPI, so MPI_THREAD_FUNNELED is what we ask for.
///
/// Errors: ember works on a duplicate of MPI_COMM_WORLD whose error handler is
/// MPI_ERRORS_RETURN, so a failing call comes back as a return code, which check() turns
/// into an ember::Error naming the call and MPI's own explanation (MPI's default handler
/// would abort without saying which of our operations failed). The duplicate also keeps
/// ember's collectives apart from any the program issues on MPI_COMM_WORLD itself.
///
/// Only MPI's C API is used; the deprecated C++ bindings (which warn under -Wextra) are
/// kept out of <mpi.h>.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <utility>

#include "ember/core/error.hpp"

namespace ember::dist {

namespace detail {

inline std::string mpi_error_string(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error code " + std::to_string(code);
    return std::string(text, static_cast<std::size_t>(len));
}

// Throws ember::Error("<call>: <MPI's message>") unless `code` is MPI_SUCCESS.
inline void check(int code, const char* call) {
    if (code != MPI_SUCCESS) ::ember::detail::fail(call, mpi_error_string(code), " (MPI error code ", code, ")");
}

inline int world_rank_or(int fallback) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin) return fallback;
    int r = fallback;
    if (MPI_Comm_rank(MPI_COMM_WORLD, &r) != MPI_SUCCESS) return fallback;
    return r;
}

}  // namespace detail

/// ember's handle on MPI: initialises and finalises it, and holds the duplicate of
/// MPI_COMM_WORLD that every ember collective runs on.
class Communicator {
public:
    /// Initialises MPI unless somebody already did (then it will not finalise it either).
    /// argc/argv may be null; Open MPI does not need them.
    explicit Communicator(int* argc = nullptr, char*** argv = nullptr) {
        int fin = 0;
        detail::check(MPI_Finalized(&fin), "MPI_Finalized");
        EMBER_CHECK(!fin, "dist::Communicator", "MPI has already been finalized; it cannot be initialised again");
        int init = 0;
        detail::check(MPI_Initialized(&init), "MPI_Initialized");
        int provided = MPI_THREAD_SINGLE;
        if (!init) {
            detail::check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
            owns_mpi_ = true;
        } else {
            detail::check(MPI_Query_thread(&provided), "MPI_Query_thread");
        }
        try {
            EMBER_CHECK(provided >= MPI_THREAD_FUNNELED, "dist::Communicator",
                        "the MPI library provides thread level ", provided,
                        ", below MPI_THREAD_FUNNELED, which ember needs because its pool's threads run "
                        "between MPI calls");
            detail::check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
            detail::check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
            detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
            detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
        } catch (...) {
            release();
            throw;
        }
    }
    ~Communicator() { release(); }
    Communicator(const Communicator&) = delete;
    Communicator& operator=(const Communicator&) = delete;

    /// This process's rank, 0 to size() - 1.
    int rank() const { return rank_; }
    /// Number of ranks.
    int size() const { return size_; }
    /// True on rank 0.
    bool is_root() const { return rank_ == 0; }
    /// Whether this object initialised MPI (and will finalise it).
    bool owns_mpi() const { return owns_mpi_; }
    /// The MPI communicator (a duplicate of MPI_COMM_WORLD).
    MPI_Comm comm() const { return comm_; }

    /// Waits until every rank has reached this call.
    void barrier() const { detail::check(MPI_Barrier(comm_), "MPI_Barrier"); }

    /// How many ranks share this machine (this one included): to divide its cores among
    /// them, e.g.\ threads per process = hardware threads / ranks_on_node().
    int ranks_on_node() const {
        MPI_Comm node = MPI_COMM_NULL;
        detail::check(MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
                      "MPI_Comm_split_type");
        int n = 1;
        const int rc = MPI_Comm_size(node, &n);
        MPI_Comm_free(&node);
        detail::check(rc, "MPI_Comm_size");
        return n;
    }

private:
    void release() noexcept {
        int fin = 0;
        MPI_Finalized(&fin);
        if (fin) return;
        if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
        // MPI_Finalize is collective: if another rank is stuck, dist::run's MPI_Abort (not
        // this destructor) is what ends the job.
        if (owns_mpi_) MPI_Finalize();
        owns_mpi_ = false;
    }

    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0, size_ = 1;
    bool owns_mpi_ = false;
};

/// Runs fn(Communicator&) -> int on every rank. An exception on any rank is printed as
/// "rank R: <message>" on stderr and ends the whole job with MPI_Abort(MPI_COMM_WORLD, 1):
/// the other ranks are typically blocked in a collective that the failed rank will never
/// join, and MPI_Abort is the only portable way to release them (mpirun then kills every
/// process and exits non-zero). A non-zero return value on some rank ends the job the same
/// way, with that code, since the others may be waiting for it too. A job of one process
/// (the program run without mpirun) has no other rank to release: it prints the message
/// alone (nothing for a non-zero return, which the program has reported), finalises MPI
/// and returns the code, without MPI_Abort's banner.
template <class F>
int run(int& argc, char**& argv, F&& fn) {
    int rc = 0;
    std::string failure;
    {
        std::optional<Communicator> comm;
        try {
            comm.emplace(&argc, &argv);
            rc = std::forward<F>(fn)(*comm);
            if (rc == 0) return 0;  // the Communicator finalises MPI on the way out
            failure = "exited with status " + std::to_string(rc);
        } catch (const std::exception& e) {
            failure = e.what();
            rc = 1;
        } catch (...) {
            failure = "unknown exception";
            rc = 1;
        }
        int init = 0, fin = 0, size = 0;
        MPI_Initialized(&init);
        MPI_Finalized(&fin);
        if (init && !fin) MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (size == 1) {  // no other rank to release: the message alone; MPI is finalised on the way out
            if (!failure.starts_with("exited with status ")) std::fprintf(stderr, "%s\n", failure.c_str());
            return rc;
        }
        std::fprintf(stderr, "rank %d: %s\n", detail::world_rank_or(-1), failure.c_str());
        std::fflush(stderr);
        if (init && !fin && size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
        // MPI_Abort does not return; without MPI (initialisation failed) just report.
    }
    return rc;
}

}  // namespace ember::dist
