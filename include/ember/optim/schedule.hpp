#pragma once
/// \file
/// Learning-rate schedules, following torch.optim.lr_scheduler (PyTorch 1.13) exactly.
///
/// A schedule wraps an optimiser (which must outlive it). Construction performs PyTorch's
/// initial step: epoch 0, at which StepLR, ExponentialLR and CosineAnnealingLR leave the lr
/// as it is and LinearWarmup multiplies it by start_factor. Each step() (call it after the
/// optimiser's step()) advances one epoch and sets the optimiser's lr.
///
/// Like PyTorch's step(), each schedule computes the new lr from the current one (the
/// recursive, "chainable" form of get_lr(), quoted below), not from a closed formula; the
/// two agree up to rounding when nothing else changes the lr. So, as in PyTorch, several
/// schedules stepped together on one optimiser compose (e.g. LinearWarmup then
/// ExponentialLR, both stepped every epoch, as ChainedScheduler does), and all of them start
/// from the optimiser's initial_lr().
#include <cmath>
#include <numbers>

#include "ember/optim/optimizer.hpp"

namespace ember {

/// What a checkpoint needs to resume a schedule: the epoch it reached and its base lr (the
/// optimiser's lr itself belongs to the optimiser).
struct ScheduleState {
    /// The epoch the schedule reached.
    long last_epoch = 0;
    /// The base lr it schedules from.
    double base_lr = 0;
};

/// The base of the learning-rate schedules: step() once per epoch sets the optimiser's lr,
/// as PyTorch's lr_scheduler does.
class LRSchedule {
public:
    virtual ~LRSchedule() = default;
    LRSchedule(const LRSchedule&) = delete;
    LRSchedule& operator=(const LRSchedule&) = delete;

    /// Advances one epoch and sets the optimiser's lr.
    void step() {
        ++last_epoch_;
        const double lr = next_lr(opt_->lr());
        opt_->set_lr(lr);
        last_lr_ = lr;
    }
    /// The current epoch (0 after construction, which applies epoch 0's lr).
    long last_epoch() const { return last_epoch_; }
    /// The lr the schedule starts from (the optimiser's initial_lr()).
    double base_lr() const { return base_lr_; }
    /// The lr this schedule set at its latest step (PyTorch's get_last_lr()).
    double last_lr() const { return last_lr_; }

    /// The state a checkpoint saves.
    ScheduleState state() const { return {last_epoch_, base_lr_}; }
    /// Resumes from a saved state: the next step() continues from epoch state.last_epoch + 1
    /// using the optimiser's current lr (restore that too).
    void load_state(const ScheduleState& s) {
        EMBER_CHECK(s.last_epoch >= 0, name_, "last_epoch must be >= 0, got ", s.last_epoch);
        last_epoch_ = s.last_epoch;
        base_lr_ = s.base_lr;
        last_lr_ = opt_->lr();
    }

protected:
    /// A schedule called `name` driving `optimizer`'s lr.
    LRSchedule(const char* name, OptimizerBase& optimizer)
        : name_(name), opt_(&optimizer), base_lr_(optimizer.initial_lr()) {}

    /// PyTorch's get_lr() at epoch last_epoch_, given the optimiser's current lr.
    virtual double next_lr(double lr) const = 0;

    /// The schedule's name, for error messages.
    const char* name_;
    /// The optimiser whose lr this schedule sets.
    OptimizerBase* opt_;
    /// The current epoch; -1 before the first step().
    long last_epoch_ = -1;
    /// The lr the schedule starts from.
    double base_lr_;
    /// The lr set by the latest step().
    double last_lr_ = 0;
};

/// Settings of StepLR.
struct StepLROptions {
    long step_size = 0;  ///< required: epochs between decays
    /// The factor applied every step_size epochs.
    double gamma = 0.1;
};

/// Multiplies the lr by gamma every step_size epochs:
///
///     lr if epoch == 0 or epoch % step_size != 0, else lr·gamma.
class StepLR final : public LRSchedule {
public:
    /// Attaches to `optimizer` and applies epoch 0's lr, as PyTorch's constructor does.
    StepLR(OptimizerBase& optimizer, StepLROptions options) : LRSchedule("StepLR", optimizer), o_(options) {
        EMBER_CHECK(o_.step_size > 0, "StepLR", "step_size must be > 0, got ", o_.step_size);
        EMBER_CHECK(o_.gamma > 0, "StepLR", "gamma must be > 0, got ", o_.gamma);
        step();
    }

private:
    double next_lr(double lr) const override {
        if (last_epoch_ == 0 || last_epoch_ % o_.step_size != 0) return lr;
        return lr * o_.gamma;
    }
    StepLROptions o_;
};

/// Settings of ExponentialLR.
struct ExponentialLROptions {
    double gamma = 0;  ///< required: the factor per epoch
};

/// Multiplies the lr by gamma every epoch: lr if epoch == 0, else lr·gamma.
class ExponentialLR final : public LRSchedule {
public:
    /// Attaches to `optimizer` and applies epoch 0's lr, as PyTorch's constructor does.
    ExponentialLR(OptimizerBase& optimizer, ExponentialLROptions options)
        : LRSchedule("ExponentialLR", optimizer), o_(options) {
        EMBER_CHECK(o_.gamma > 0, "ExponentialLR", "gamma must be > 0, got ", o_.gamma);
        step();
    }

private:
    double next_lr(double lr) const override { return last_epoch_ == 0 ? lr : lr * o_.gamma; }
    ExponentialLROptions o_;
};

/// Settings of CosineAnnealingLR.
struct CosineAnnealingLROptions {
    long t_max = 0;  ///< required: epochs from the base lr down to eta_min (PyTorch's T_max)
    /// The lowest lr, reached at epoch t_max.
    double eta_min = 0;
};

/// Cosine annealing from the base lr to eta_min over t_max epochs, then back up (SGDR without
/// restarts): in closed form eta_min + (base − eta_min)·(1 + cos(π·epoch/t_max))/2. PyTorch's
/// recursive form, used here:
///
///     epoch == 0:                              lr
///     (epoch − 1 − t_max) % (2·t_max) == 0:    lr + (base − eta_min)·(1 − cos(π/t_max))/2
///     otherwise:   (1 + cos(π·epoch/t_max)) / (1 + cos(π·(epoch − 1)/t_max))·(lr − eta_min) + eta_min
/// (PyTorch's extra branch for a scheduler constructed with last_epoch > 0 does not arise:
/// resuming goes through load_state.)
class CosineAnnealingLR final : public LRSchedule {
public:
    /// Attaches to `optimizer` and applies epoch 0's lr, as PyTorch's constructor does.
    CosineAnnealingLR(OptimizerBase& optimizer, CosineAnnealingLROptions options)
        : LRSchedule("CosineAnnealingLR", optimizer), o_(options) {
        EMBER_CHECK(o_.t_max > 0, "CosineAnnealingLR", "t_max must be > 0, got ", o_.t_max);
        EMBER_CHECK(o_.eta_min >= 0, "CosineAnnealingLR", "eta_min must be >= 0, got ", o_.eta_min);
        step();
    }

private:
    double next_lr(double lr) const override {
        constexpr double pi = std::numbers::pi;  // Python's math.pi
        const long e = last_epoch_, t = o_.t_max;
        const double eta_min = o_.eta_min;
        if (e == 0) return lr;
        if ((e - 1 - t) % (2 * t) == 0)
            return lr + (base_lr_ - eta_min) * (1 - std::cos(pi / static_cast<double>(t))) / 2;
        return (1 + std::cos(pi * static_cast<double>(e) / static_cast<double>(t))) /
                   (1 + std::cos(pi * static_cast<double>(e - 1) / static_cast<double>(t))) * (lr - eta_min) +
               eta_min;
    }
    CosineAnnealingLROptions o_;
};

/// Settings of LinearWarmup.
struct LinearWarmupOptions {
    double start_factor = 1.0 / 3;  ///< the lr at epoch 0 is base·start_factor
    double end_factor = 1.0;        ///< ... rising (or falling) linearly to base·end_factor
    long total_iters = 5;           ///< ... reached at this epoch and kept afterwards
};

/// PyTorch's LinearLR: the factor on the base lr moves linearly from start_factor (epoch 0)
/// to end_factor (epoch total_iters), then stays. Recursive form:
///
///     epoch == 0:            lr·start_factor
///     epoch > total_iters:   lr
///     otherwise:  lr·(1 + (end − start) / (total_iters·start + (epoch − 1)·(end − start)))
class LinearWarmup final : public LRSchedule {
public:
    /// Attaches to `optimizer` and applies epoch 0's lr, as PyTorch's constructor does.
    LinearWarmup(OptimizerBase& optimizer, LinearWarmupOptions options = {})
        : LRSchedule("LinearWarmup", optimizer), o_(options) {
        // PyTorch 1.13 accepts start_factor = 0, then divides by zero at epoch 1; later
        // versions require start_factor > 0, as here.
        EMBER_CHECK(o_.start_factor > 0 && o_.start_factor <= 1, "LinearWarmup", "start_factor must be in (0,1], got ",
                    o_.start_factor);
        EMBER_CHECK(o_.end_factor >= 0 && o_.end_factor <= 1, "LinearWarmup", "end_factor must be in [0,1], got ",
                    o_.end_factor);
        EMBER_CHECK(o_.total_iters > 0, "LinearWarmup", "total_iters must be > 0, got ", o_.total_iters);
        step();
    }

private:
    double next_lr(double lr) const override {
        const double start = o_.start_factor, end = o_.end_factor;
        if (last_epoch_ == 0) return lr * start;
        if (last_epoch_ > o_.total_iters) return lr;
        return lr * (1. + (end - start) / (static_cast<double>(o_.total_iters) * start +
                                           static_cast<double>(last_epoch_ - 1) * (end - start)));
    }
    LinearWarmupOptions o_;
};

}  // namespace ember
