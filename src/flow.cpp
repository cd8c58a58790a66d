// ember::compiled: normalising-flow steps, instantiated once for float and double.
// The headers declare these instances extern when EMBER_COMPILED is defined (core/instances.hpp).
#include "ember/flow/actnorm.hpp"
#include "ember/flow/conditioner.hpp"
#include "ember/flow/coupling.hpp"
#include "ember/flow/factor_out.hpp"
#include "ember/flow/image.hpp"
#include "ember/flow/inverse_matrix.hpp"
#include "ember/flow/invertible_linear.hpp"
#include "ember/flow/logit.hpp"
#include "ember/flow/masks.hpp"
#include "ember/flow/squeeze.hpp"
#include "ember/flow/step.hpp"

namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_FLOW_STEP_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_ACTNORM_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_COUPLING_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_FACTOR_OUT_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_INVERTIBLE_LINEAR_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_LOGIT_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_SQUEEZE_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_CONDITIONER_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_FLOW_IMAGE_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_INVERSE_MATRIX_INSTANCES) }
namespace ember::flow { EMBER_DEFINE_INSTANCES(EMBER_MASKS_INSTANCES) }
