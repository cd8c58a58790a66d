#pragma once
/// \file
/// ember: tensors, fused SIMD expression templates and reverse-mode autodiff (with
/// gradients of gradients) for energy-based models and GANs. Include this one header.
#include "ember/core/error.hpp"
#include "ember/core/random.hpp"
#include "ember/core/shape.hpp"
#include "ember/core/storage.hpp"
#include "ember/core/tensor.hpp"
#include "ember/core/threading.hpp"
#include "ember/autodiff/var.hpp"
#include "ember/autodiff/expr_node.hpp"
#include "ember/autodiff/engine.hpp"
#include "ember/autodiff/gradcheck.hpp"
#include "ember/ops/broadcast.hpp"
#include "ember/ops/batch_norm.hpp"
#include "ember/ops/conv.hpp"
#include "ember/ops/pool.hpp"
#include "ember/ops/upsample_conv.hpp"
#include "ember/ops/linalg.hpp"
#include "ember/ops/reduce.hpp"
#include "ember/ops/shape.hpp"
#include "ember/data/data.hpp"
#include "ember/io/io.hpp"
#include "ember/nn/nn.hpp"
#include "ember/energy/energy.hpp"
#include "ember/divergence/divergence.hpp"
#include "ember/info/info.hpp"
#include "ember/info/vae.hpp"
#include "ember/optim/optim.hpp"
#include "ember/sample/sample.hpp"
#include "ember/flow/flow.hpp"
#include "ember/train/train.hpp"
// Pictures (PNG grids, scatter/density/line plots) need libstb-dev; without it ember.hpp
// still works and only <ember/io/plot.hpp> itself stops with an #error.
#if __has_include(<stb/stb_image_write.h>) && __has_include(<stb/stb_easy_font.h>)
#include "ember/io/plot.hpp"
#endif
/// \namespace ember
/// Tensors, elementwise expressions (defined in ember::expr and brought into this namespace
/// by using-declarations), autodiff, the non-elementwise ops, data sets, files and
/// pictures, optimisers, training plumbing, VAE objectives and the evaluation helpers. The
/// model-specific parts have namespaces of their own: nn, energy, fdiv, gan, info, flow,
/// sample and dist.
