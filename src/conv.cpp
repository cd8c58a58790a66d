// ember::compiled: convolutions, pooling, upsampling and batch normalisation, instantiated
// once for float and double.
// The headers declare these instances extern when EMBER_COMPILED is defined (core/instances.hpp).
#include "ember/ops/batch_norm.hpp"
#include "ember/ops/conv.hpp"
#include "ember/ops/pool.hpp"
#include "ember/ops/upsample_conv.hpp"

namespace ember { EMBER_DEFINE_INSTANCES(EMBER_CONV_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_POOL_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_UPSAMPLE_CONV_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_BATCH_NORM_INSTANCES) }
