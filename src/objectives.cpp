// ember::compiled: energies, penalties, GAN and f-divergence losses, information bounds and
// the VAE terms, instantiated once for float and double.
// The headers declare these instances extern when EMBER_COMPILED is defined (core/instances.hpp).
#include "ember/divergence/gan_loss.hpp"
#include "ember/energy/contrastive.hpp"
#include "ember/energy/ebgan.hpp"
#include "ember/energy/penalty.hpp"
#include "ember/info/entropy.hpp"
#include "ember/info/meg.hpp"
#include "ember/info/mi.hpp"
#include "ember/info/vae.hpp"

namespace ember::energy { EMBER_DEFINE_INSTANCES(EMBER_PENALTY_INSTANCES) }
namespace ember::energy { EMBER_DEFINE_INSTANCES(EMBER_CONTRASTIVE_INSTANCES) }
namespace ember::energy { EMBER_DEFINE_INSTANCES(EMBER_EBGAN_INSTANCES) }
namespace ember::gan { EMBER_DEFINE_INSTANCES(EMBER_GAN_LOSS_INSTANCES) }
namespace ember::info { EMBER_DEFINE_INSTANCES(EMBER_MI_INSTANCES) }
namespace ember::info { EMBER_DEFINE_INSTANCES(EMBER_MEG_INSTANCES) }
namespace ember::info { EMBER_DEFINE_INSTANCES(EMBER_ENTROPY_INSTANCES) }
namespace ember::info { EMBER_DEFINE_INSTANCES(EMBER_VAE_INSTANCES) }
