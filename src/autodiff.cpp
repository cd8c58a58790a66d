// ember::compiled: random draws, the backward walk, reductions, shape and broadcasting ops
// and matrix products, instantiated once for float and double.
// The headers declare these instances extern when EMBER_COMPILED is defined (core/instances.hpp).
#include "ember/autodiff/engine.hpp"
#include "ember/core/random.hpp"
#include "ember/ops/broadcast.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"

namespace ember { EMBER_DEFINE_INSTANCES(EMBER_RANDOM_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_ENGINE_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_BROADCAST_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_REDUCE_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_SHAPE_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_LINALG_INSTANCES) }
