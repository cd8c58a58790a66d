#pragma once
/// \file
/// Divergences between a data distribution and a model (docs/math.md §4): the f-divergence
/// family with its variational bounds and f-GAN losses (namespace ember::fdiv), and the
/// classic, Wasserstein and hinge GAN losses with weight clipping (namespace ember::gan).
#include "ember/divergence/fdiv.hpp"
#include "ember/divergence/gan_loss.hpp"
