#pragma once
/// \file
/// Data sets: IDX files (MNIST, Fashion-MNIST), StackedMNIST, built-in 2-D distributions,
/// mini-batches.
#include "ember/data/batches.hpp"
#include "ember/data/idx.hpp"
#include "ember/data/mnist.hpp"
#include "ember/data/stacked.hpp"
#include "ember/data/toy2d.hpp"
