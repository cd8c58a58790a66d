#pragma once
/// \file
/// Normalising flows (docs/math.md §6), in namespace ember::flow; see docs/flows.md.
///
///     step.hpp               FlowStep: forward_and_logdet(x) -> {y, logdet [N]}, inverse(y)
///     sequence.hpp           Flow: a sequence of steps, log_prob(x), sample(n, gen, temperature)
///     coupling.hpp           AffineCoupling (RealNVP), AdditiveCoupling (NICE)
///     masks.hpp              half (vectors), checkerboard and channel (images) masks
///     conditioner.hpp        MLP and convolutional coupling networks, ready-made couplings
///     actnorm.hpp            ActNorm with data-dependent initialisation
///     invertible_linear.hpp  InvertibleLinear, InvertibleConv1x1 (LU parameterisation)
///     inverse_matrix.hpp     differentiable W⁻¹ (their inverse pass)
///     squeeze.hpp            Squeeze, Unsqueeze, squeeze2d / unsqueeze2d (space-to-depth)
///     factor_out.hpp         FactorOut: later steps transform only part of the channels
///     logit.hpp              LogitTransform
///     image.hpp              uniform dequantisation, bits per dimension
#include "ember/flow/actnorm.hpp"
#include "ember/flow/conditioner.hpp"
#include "ember/flow/coupling.hpp"
#include "ember/flow/factor_out.hpp"
#include "ember/flow/image.hpp"
#include "ember/flow/inverse_matrix.hpp"
#include "ember/flow/invertible_linear.hpp"
#include "ember/flow/logit.hpp"
#include "ember/flow/masks.hpp"
#include "ember/flow/sequence.hpp"
#include "ember/flow/squeeze.hpp"
#include "ember/flow/step.hpp"
/// \namespace ember::flow
/// Normalising flows with exact log-likelihood: invertible steps with their log-Jacobian
/// determinants, and Flow, a sequence of them with log_prob and sampling (docs/flows.md).
