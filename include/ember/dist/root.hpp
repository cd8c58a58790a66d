#pragma once
/// \file
/// Rank 0 alone writes: checkpoints, pictures, metrics files, progress lines and logs. All
/// ranks hold the same parameters after every step (they start from rank 0's and apply the
/// same averaged gradients), so rank 0's copy is the model; K ranks writing the same file
/// would race and K progress lines would interleave.
///
///     dist::on_root(comm, [&] { ckpt.save(path); save_pictures(); });
///
/// If the write throws on rank 0, dist::run aborts the job: the other ranks, already in the
/// next step's collectives, are released instead of waiting forever.
#include <utility>

#include "ember/dist/communicator.hpp"

namespace ember::dist {

/// Calls f() on rank 0 only.
template <class F>
void on_root(const Communicator& comm, F&& f) {
    if (comm.is_root()) std::forward<F>(f)();
}

}  // namespace ember::dist
