#pragma once
/// \file
/// Samplers for densities ∝ exp(-U(x)) on any energy (docs/math.md §7), in namespace
/// ember::sample: unadjusted Langevin and MALA, HMC, SGLD with a replay buffer, latent-space
/// energies through a generator, step-size adaptation, ESS / R̂ diagnostics, and annealed
/// importance sampling for normalising constants.
#include "ember/sample/adapt.hpp"
#include "ember/sample/ais.hpp"
#include "ember/sample/chains.hpp"
#include "ember/sample/diagnostics.hpp"
#include "ember/sample/energy.hpp"
#include "ember/sample/hmc.hpp"
#include "ember/sample/langevin.hpp"
#include "ember/sample/latent.hpp"
#include "ember/sample/replay_buffer.hpp"
#include "ember/sample/sgld.hpp"
/// \namespace ember::sample
/// Samplers for densities proportional to exp(-U(x)), all chains in one batch: Langevin,
/// MALA, HMC, SGLD with a replay buffer, latent-space energies, step-size adaptation, chain
/// diagnostics and annealed importance sampling (docs/samplers.md).
