#pragma once
/// \file
/// Plumbing for training loops: a progress line with rate and ETA (progress.hpp) and a
/// crash-safe, resumable CSV log of metrics (metrics.hpp). Plots of such a log are in
/// ember/io/line_plot.hpp. POSIX only (isatty, open, write).
#include "ember/train/metrics.hpp"
#include "ember/train/progress.hpp"
#include "ember/train/checkpoint.hpp"
