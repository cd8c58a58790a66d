#pragma once
/// \file
/// Information-theoretic objectives (docs/math.md §2, §8), in namespace ember::info:
///
///     mi.hpp      mutual-information estimators over critic scores (JSD, DV, MINE, NWJ,
///                 InfoNCE, JSD-then-NWJ), Barber-Agakov bound, joint/marginal pair helpers
///     meg.hpp     the maximum-entropy generator's loss E[U(G(z))] - β Î(G(z); z)
///     entropy.hpp Gaussian entropy closed forms, Kozachenko-Leonenko kNN entropy estimator
#include "ember/info/entropy.hpp"
#include "ember/info/meg.hpp"
#include "ember/info/mi.hpp"
/// \namespace ember::info
/// Information-theoretic objectives: mutual-information estimators over critic scores, the
/// maximum-entropy generator's loss and entropy estimators.
