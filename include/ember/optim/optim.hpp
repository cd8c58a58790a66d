#pragma once
/// \file
/// Optimisers (SGD, Adam, AdamW, RMSprop), gradient clipping and learning-rate schedules,
/// following PyTorch 1.13's torch.optim and torch.nn.utils.clip_grad_* update rules.
///
///     Adam<float> opt(params, {.lr = 2e-4, .betas = {0.5, 0.999}});
///     CosineAnnealingLR schedule(opt, {.t_max = 100});
///     for (...) {
///         opt.zero_grad();
///         loss.backward();
///         clip_grad_norm_(opt.params(), 1.0);
///         opt.step();
///         schedule.step();
///     }
#include "ember/optim/optimizer.hpp"
#include "ember/optim/sgd.hpp"
#include "ember/optim/adam.hpp"
#include "ember/optim/rmsprop.hpp"
#include "ember/optim/clip.hpp"
#include "ember/optim/average.hpp"
#include "ember/optim/schedule.hpp"
