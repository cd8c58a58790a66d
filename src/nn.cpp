// ember::compiled: layers, instantiated once for float and double.
// The headers declare these instances extern when EMBER_COMPILED is defined (core/instances.hpp).
#include "ember/nn/activation.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/dropout.hpp"
#include "ember/nn/layer.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/module.hpp"
#include "ember/nn/norm.hpp"
#include "ember/nn/reshaping.hpp"
#include "ember/nn/spectral_norm.hpp"

namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_MODULE_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_LAYER_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_LINEAR_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_NN_CONV_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_DROPOUT_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_NORM_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_RESHAPING_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_SPECTRAL_NORM_INSTANCES) }
namespace ember::nn { EMBER_DEFINE_INSTANCES(EMBER_ACTIVATION_INSTANCES) }
