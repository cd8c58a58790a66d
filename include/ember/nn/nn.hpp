#pragma once
/// \file
/// Layers: everything under include/ember/nn/.
#include "ember/nn/activation.hpp"
#include "ember/nn/conv.hpp"
#include "ember/nn/dropout.hpp"
#include "ember/nn/init.hpp"
#include "ember/nn/layer.hpp"
#include "ember/nn/linear.hpp"
#include "ember/nn/module.hpp"
#include "ember/nn/norm.hpp"
#include "ember/nn/reshaping.hpp"
#include "ember/nn/sequential.hpp"
#include "ember/nn/spectral_norm.hpp"
/// \namespace ember::nn
/// Layers with PyTorch's names, parameter layouts and initialisation, all derived from
/// Module: linear and convolutional layers, normalisation, activations, pooling and
/// reshaping, Sequential and SpectralNorm (docs/nn.md).
