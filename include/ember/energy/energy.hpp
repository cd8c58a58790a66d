#pragma once
/// \file
/// Energy-based model objectives (docs/math.md §1, §3): the contrastive loss and energy-magnitude
/// regulariser, gradient penalties (R1, WGAN-GP, one-sided), and EBGAN's auto-encoder
/// energy, margin loss and pulling-away term. All in namespace ember::energy.
#include "ember/energy/contrastive.hpp"
#include "ember/energy/ebgan.hpp"
#include "ember/energy/penalty.hpp"
/// \namespace ember::energy
/// Energy-based model objectives: the contrastive loss and its energy-magnitude regulariser,
/// gradient penalties (R1, WGAN-GP, one-sided), and EBGAN's auto-encoder energy, margin loss
/// and pulling-away term.
