// ember::compiled: optimisers, checkpoints and tensor files, instantiated once for float and
// double.
// The headers declare these instances extern when EMBER_COMPILED is defined (core/instances.hpp).
#include "ember/io/npy.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/optim/adam.hpp"
#include "ember/optim/average.hpp"
#include "ember/optim/clip.hpp"
#include "ember/optim/optimizer.hpp"
#include "ember/optim/rmsprop.hpp"
#include "ember/optim/sgd.hpp"
#include "ember/train/checkpoint.hpp"

namespace ember { EMBER_DEFINE_INSTANCES(EMBER_OPTIMIZER_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_ADAM_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_SGD_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_RMSPROP_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_AVERAGE_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_CLIP_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_CHECKPOINT_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_NPY_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_SAFETENSORS_INSTANCES) }
