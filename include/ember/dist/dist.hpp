#pragma once
/// \file
/// ember::dist: data parallelism over MPI (Open MPI on Debian: libopenmpi-dev). Not part
/// of <ember/ember.hpp>, so programs built without MPI never see <mpi.h>; link the CMake
/// target ember::dist (which exists when ember was configured with EMBER_WITH_MPI) and
/// include this header. See docs/distributed.md.
///
///     communicator.hpp      Communicator (RAII MPI init/finalize), dist::run (abort on error)
///     collectives.hpp       broadcast_parameters, allreduce_gradients, gather, allreduce
///     sharded_batches.hpp   ShardedBatchIterator: a disjoint shard of every global batch
///     sampling.hpp          per-rank chain seeds, ChainStats / ESS / R-hat over all ranks
///     root.hpp              RootOnly: what only rank 0 writes (checkpoints, pictures, logs)
#include "ember/dist/collectives.hpp"
#include "ember/dist/communicator.hpp"
#include "ember/dist/root.hpp"
#include "ember/dist/sampling.hpp"
#include "ember/dist/sharded_batches.hpp"
/// \namespace ember::dist
/// Data parallelism over MPI: the communicator, parameter broadcast, gradient all-reduce,
/// sharded mini-batches, reductions and sampler statistics over ranks (docs/distributed.md).
