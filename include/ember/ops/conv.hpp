#pragma once
/// \file
/// 2-D convolution on NCHW. Three bilinear primitives close under differentiation:
///
///     conv2d(x, W, b)         y = act(W · cols(x) + b)   (bias and activation applied as y is stored)
///     conv2d_adjoint(y, W)    x = col2im(Wᵀ · y)           (= conv_transpose2d)
///     conv2d_weight(x, g)     dW = g · cols(x)ᵀ
/// Each one's backward is made of the other two, so every conv is twice differentiable. This
/// header holds their shape rules and autodiff; the kernels are behind one entry point per
/// primitive in ops/conv/backend.hpp, which chooses among im2col + GEMM, a direct kernel and
/// a samples-innermost layout (ForceConvBackend picks one by hand).
#include <cmath>
#include <optional>
#include <vector>

#include "ember/autodiff/expr_node.hpp"
#include "ember/core/instances.hpp"
#include "ember/ops/broadcast.hpp"
#include "ember/ops/conv/backend.hpp"
#include "ember/ops/pool.hpp"
#include "ember/ops/shape.hpp"

namespace ember {

/// The activation a convolution applies as it stores its output: none, or a leaky ReLU
/// (`ConvActivation::leaky_relu(0.2)`; `relu()` is slope 0). Fused into the convolution it
/// saves a pass over the output, and one over the gradient, whose derivative is applied as
/// the gradient is read; the values and gradients are those of conv2d followed by leaky_relu.
struct ConvActivation {
    /// The leaky ReLU's negative slope, or none for no activation.
    std::optional<double> leaky_relu_slope;
    /// x for x > 0, negative_slope·x otherwise.
    static ConvActivation leaky_relu(double negative_slope) { return {negative_slope}; }
    /// max(x, 0).
    static ConvActivation relu() { return {0.0}; }
};

/// Stride, padding, dilation and activation of conv2d, as torch.nn.functional.conv2d's
/// arguments plus the activation that follows.
struct Conv2dOptions {
    ///@{
    /// Stride, zero padding on each side and dilation, the same along both image axes.
    Index stride = 1, padding = 0, dilation = 1;
    ///@}
    /// Applied to the output as it is stored (none by default).
    ConvActivation activation{};
};
/// Stride, padding, output padding and dilation of conv_transpose2d, as PyTorch's arguments.
struct ConvTranspose2dOptions {
    ///@{
    /// Stride, padding, output padding and dilation, the same along both image axes.
    Index stride = 1, padding = 0, output_padding = 0, dilation = 1;
///@}
};

namespace detail {

template <Real T> Var<T> conv_y(const Var<T>& x, const Var<T>& w, const ConvGeometry& g, const Var<T>& bias = {});
template <Real T> Var<T> conv_x(const Var<T>& y, const Var<T>& w, const ConvGeometry& g);
template <Real T> Var<T> conv_w(const Var<T>& x, const Var<T>& y, const ConvGeometry& g);

// The gradient of the bias: gy summed over samples and pixels.
template <Real T>
Var<T> bias_gradient(const Var<T>& gy, const ConvGeometry& g) {
    return reshape(sum_to(gy, Shape{1, g.O, 1, 1}), Shape{g.O});
}

// y = conv(x, w) + bias: the bias is added as the output is stored.
template <Real T>
Var<T> conv_y(const Var<T>& x, const Var<T>& w, const ConvGeometry& g, const Var<T>& bias) {
    auto backward = [x, w, g](const Var<T>& gy, std::span<const bool> need) {
        std::vector<Var<T>> out(need.size());
        if (need[0]) out[0] = conv_x(gy, w, g);
        if (need[1]) out[1] = conv_w(x, gy, g);
        if (need.size() > 2 && need[2]) out[2] = bias_gradient(gy, g);
        return out;
    };
    if (!bias.defined()) return record("conv2d", conv_forward(g, x.value(), w.value(), ConvEpilogue<T>{}), {x, w}, backward);
    const Tensor<T> b = bias.value().contiguous();
    return record("conv2d", conv_forward(g, x.value(), w.value(), ConvEpilogue<T>{b.data(), std::nullopt}), {x, w, bias},
                  backward);
}
template <Real T>
Var<T> conv_x(const Var<T>& y, const Var<T>& w, const ConvGeometry& g) {
    return record("conv_transpose2d", conv_adjoint(g, y.value(), w.value()), {y, w}, [y, w, g](const Var<T>& gx, std::span<const bool> need) {
        std::vector<Var<T>> out(2);
        if (need[0]) out[0] = conv_y(gx, w, g);
        if (need[1]) out[1] = conv_w(gx, y, g);
        return out;
    });
}
template <Real T>
Var<T> conv_w(const Var<T>& x, const Var<T>& y, const ConvGeometry& g) {
    return record("conv2d_weight", conv_weight(g, x.value(), y.value()), {x, y}, [x, y, g](const Var<T>& gw, std::span<const bool> need) {
        std::vector<Var<T>> out(2);
        if (need[0]) out[0] = conv_x(y, gw, g);
        if (need[1]) out[1] = conv_y(x, gw, g);
        return out;
    });
}

// h = leaky_relu(conv(x, w) + bias, slope), slope >= 0, as one op: the backend applies the
// activation as it stores h, and the gradient of its input is gh where h > 0 and slope·gh
// elsewhere (LeakyReluOp's derivative; h > 0 exactly where the activation's input was). A
// sampler's input gradient (no graph, only x) scales gh inside the adjoint's kernel where
// the backend can (conv_adjoint_through). The derivative of the mask is zero, so the
// recorded backward (create_graph) is gy = where(h > 0, gh, slope·gh) through the primitives.
template <Real T>
Var<T> conv_y_activated(const Var<T>& x, const Var<T>& w, const ConvGeometry& g, const Var<T>& bias, double slope) {
    const Tensor<T> b = bias.defined() ? bias.value().contiguous() : Tensor<T>();
    const T s = static_cast<T>(slope);
    const Tensor<T> h = conv_forward(g, x.value(), w.value(), ConvEpilogue<T>{b.defined() ? b.data() : nullptr, s});
    auto backward = [x, w, g, h, s](const Var<T>& gh, std::span<const bool> need) {
        std::vector<Var<T>> out(need.size());
        const bool input_only = !need[1] && (need.size() < 3 || !need[2]);
        if (need[0] && input_only && !grad_enabled()) {
            out[0] = Var<T>(conv_adjoint_through(g, gh.value(), h, s, w.value()));
            return out;
        }
        const Var<T> gy(where(h > T(0), gh, gh * s));
        if (need[0]) out[0] = conv_x(gy, w, g);
        if (need[1]) out[1] = conv_w(x, gy, g);
        if (need.size() > 2 && need[2]) out[2] = bias_gradient(gy, g);
        return out;
    };
    if (!bias.defined()) return record("conv2d", h, {x, w}, backward);
    return record("conv2d", h, {x, w, bias}, backward);
}

template <Real T>
void check_channel_bias(const Var<T>& bias, Index channels, const char* op) {
    if (!bias.defined()) return;
    EMBER_CHECK(bias.shape() == Shape{channels}, op, "bias shape ", bias.shape().str(), " does not match ", channels,
                " output channels");
}
template <Real T>
Var<T> add_channel_bias(const Var<T>& y, const Var<T>& bias, Index channels, const char* op) {
    if (!bias.defined()) return y;
    check_channel_bias(bias, channels, op);
    return Var<T>(y + reshape(bias, Shape{1, channels, 1, 1}));
}

// conv2d's geometry, after checking its arguments (`op` names the caller in errors).
template <Real T>
ConvGeometry conv2d_geometry(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, const Conv2dOptions& o, const char* op) {
    const Shape &xs = x.shape(), &ws = weight.shape();
    EMBER_CHECK(xs.rank() == 4 && ws.rank() == 4, op, "expected input [N,C,H,W] and weight [O,C,kh,kw], got ", xs.str(),
                " and ", ws.str());
    EMBER_CHECK(xs[1] == ws[1], op, "input has ", xs[1], " channels but weight expects ", ws[1], ": ", xs.str(), " * ",
                ws.str());
    EMBER_CHECK(o.stride > 0 && o.dilation > 0 && o.padding >= 0, op, "stride and dilation must be positive, padding non-negative");
    ConvGeometry g{xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], o.stride, o.padding, o.dilation, 0, 0};
    g.Ho = conv_out_size(g.H, g.kh, g.stride, g.pad, g.dil);
    g.Wo = conv_out_size(g.W, g.kw, g.stride, g.pad, g.dil);
    EMBER_CHECK(g.Ho > 0 && g.Wo > 0, op, "kernel ", ws.str(), " larger than padded input ", xs.str());
    check_channel_bias(bias, g.O, op);
    if (const auto& slope = o.activation.leaky_relu_slope)
        EMBER_CHECK(std::isfinite(*slope), op, "the leaky ReLU's slope must be finite, got ", *slope);
    return g;
}
}  // namespace detail

/// x [N,C,H,W], weight [O,C,kh,kw], optional bias [O] -> [N,O,Ho,Wo], with the activation of
/// `o` (none by default) applied as the output is stored.
template <Real T>
Var<T> conv2d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias = {}, Conv2dOptions o = {}) {
    const detail::ConvGeometry g = detail::conv2d_geometry(x, weight, bias, o, "conv2d");
    const std::optional<double> slope = o.activation.leaky_relu_slope;
    if (!slope) return detail::conv_y(x, weight, g, bias);
    // A negative slope makes h > 0 where the activation's input was negative, so the sign of h
    // would not give the derivative: the two ops.
    if (*slope < 0) return Var<T>(leaky_relu(detail::conv_y(x, weight, g, bias), *slope));
    return detail::conv_y_activated(x, weight, g, bias, *slope);
}

/// The adjoint (gradient) of conv2d, as generators use it: y [N,Cin,H,W], weight
/// [Cin,Cout,kh,kw] (PyTorch's layout), optional bias [Cout] -> [N,Cout,Hout,Wout] with
/// Hout = (H-1)·stride - 2·padding + dilation·(kh-1) + output_padding + 1.
template <Real T>
Var<T> conv_transpose2d(const Var<T>& y, const Var<T>& weight, const Var<T>& bias = {}, ConvTranspose2dOptions o = {}) {
    const Shape &ys = y.shape(), &ws = weight.shape();
    EMBER_CHECK(ys.rank() == 4 && ws.rank() == 4, "conv_transpose2d",
                "expected input [N,Cin,H,W] and weight [Cin,Cout,kh,kw], got ", ys.str(), " and ", ws.str());
    EMBER_CHECK(ys[1] == ws[0], "conv_transpose2d", "input has ", ys[1], " channels but weight expects ", ws[0], ": ",
                ys.str(), " * ", ws.str());
    EMBER_CHECK(o.stride > 0 && o.dilation > 0 && o.padding >= 0 && o.output_padding >= 0 &&
                    o.output_padding < std::max(o.stride, o.dilation),
                "conv_transpose2d", "invalid stride/padding/output_padding/dilation");
    const Index H = (ys[2] - 1) * o.stride - 2 * o.padding + o.dilation * (ws[2] - 1) + o.output_padding + 1;
    const Index W = (ys[3] - 1) * o.stride - 2 * o.padding + o.dilation * (ws[3] - 1) + o.output_padding + 1;
    EMBER_CHECK(H > 0 && W > 0, "conv_transpose2d", "output size would be empty for input ", ys.str());
    detail::ConvGeometry g{ys[0], ws[1], H, W, ws[0], ws[2], ws[3], o.stride, o.padding, o.dilation, ys[2], ys[3]};
    return detail::add_channel_bias(detail::conv_x(y, weight, g), bias, g.C, "conv_transpose2d");
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CONV_INSTANCES(X, T) \
    X template Var<T> conv2d<T>(const Var<T>&, const Var<T>&, const Var<T>&, Conv2dOptions); \
    X template Var<T> conv_transpose2d<T>(const Var<T>&, const Var<T>&, const Var<T>&, ConvTranspose2dOptions);
EMBER_EXTERN_INSTANCES(EMBER_CONV_INSTANCES)

}  // namespace ember
