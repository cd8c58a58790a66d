// ember::compiled: samplers, instantiated once for float and double.
// The headers declare these instances extern when EMBER_COMPILED is defined (core/instances.hpp).
#include "ember/sample/ais.hpp"
#include "ember/sample/chains.hpp"
#include "ember/sample/energy.hpp"
#include "ember/sample/hmc.hpp"
#include "ember/sample/langevin.hpp"
#include "ember/sample/latent.hpp"
#include "ember/sample/replay_buffer.hpp"
#include "ember/sample/sgld.hpp"

namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_SAMPLE_ENERGY_INSTANCES) }
namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_CHAINS_INSTANCES) }
namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_LANGEVIN_INSTANCES) }
namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_HMC_INSTANCES) }
namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_LATENT_INSTANCES) }
namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_REPLAY_BUFFER_INSTANCES) }
namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_SGLD_INSTANCES) }
namespace ember::sample { EMBER_DEFINE_INSTANCES(EMBER_AIS_INSTANCES) }
