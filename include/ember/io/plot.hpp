#pragma once
/// \file
/// ember's picture helpers, all writing PNG files atomically. Include this one header to
/// get all of them:
///
///     image.hpp       Image (RGB canvas, blit, hstack/vstack), text, viridis, save_png
///     image_grid.hpp  save_image_grid: a batch [N, C, H, W] as a grid, like torchvision
///     plot2d.hpp      scatter_plot, density_plot, heatmap_plot of 2-D data, with mode markers
///     line_plot.hpp   line_plot of named series (log y, legend), metrics CSV plots
/// They need libstb-dev (stb_image_write, stb_easy_font); without it they stop with an
/// `#error` saying so. ember/ember.hpp includes this header only when libstb-dev is found.
#include "ember/io/image.hpp"
#include "ember/io/image_grid.hpp"
#include "ember/io/line_plot.hpp"
#include "ember/io/plot2d.hpp"
