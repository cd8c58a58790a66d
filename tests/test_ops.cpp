// Reductions, matrix products, convolutions, pooling and shape ops through the harness.
#include <array>
#include <cmath>
#include <limits>
#include <map>

#include "harness.hpp"

using namespace ember;
using namespace ember::test;

namespace {

// Reference reduction of `t` over `axis` (or everything) by folding each slice into f.
Tensor<double> reduce_ref(const Tensor<double>& t, std::optional<int> axis, bool keepdim,
                          const std::function<double(const std::vector<double>&)>& f) {
    const Shape& s = t.shape();
    if (!axis) {
        Tensor<double> out = Tensor<double>::scalar(f(t.to_vector()));
        if (!keepdim) return out;
        Shape k = s;
        for (int d = 0; d < s.rank(); ++d) k[d] = 1;
        return out.reshape(k);
    }
    const int a = s.normalize_axis(*axis, "ref");
    Index outer = 1, inner = 1;
    for (int d = 0; d < a; ++d) outer *= s[d];
    for (int d = a + 1; d < s.rank(); ++d) inner *= s[d];
    std::vector<double> res;
    const Tensor<double> c = t.contiguous();
    for (Index o = 0; o < outer; ++o)
        for (Index i = 0; i < inner; ++i) {
            std::vector<double> v;
            for (Index k = 0; k < s[a]; ++k) v.push_back(c.data()[(o * s[a] + k) * inner + i]);
            res.push_back(f(v));
        }
    std::vector<Index> dims;
    for (int d = 0; d < s.rank(); ++d)
        if (d != a || keepdim) dims.push_back(d == a ? 1 : s[d]);
    return Tensor<double>::from(Shape(std::span<const Index>(dims)), res);
}

double vsum(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s;
}

Tensor<double> matmul_ref(const Tensor<double>& a, const Tensor<double>& b) {
    const bool batched = a.rank() == 3;
    const Index B = batched ? a.dim(0) : 1, M = a.dim(-2), K = a.dim(-1), N = b.dim(-1);
    Tensor<double> out = batched ? Tensor<double>::zeros({B, M, N}) : Tensor<double>::zeros({M, N});
    for (Index bi = 0; bi < B; ++bi)
        for (Index i = 0; i < M; ++i)
            for (Index j = 0; j < N; ++j) {
                double s = 0;
                for (Index k = 0; k < K; ++k) {
                    const double av = batched ? a.at({bi, i, k}) : a.at({i, k});
                    const double bv = b.rank() == 3 ? b.at({bi, k, j}) : b.at({k, j});
                    s += av * bv;
                }
                out.data()[(bi * M + i) * N + j] = s;
            }
    return out;
}

// Direct convolution: y[n,o,i,j] = Σ x[n,c,i*s-p+ki*d, j*s-p+kj*d] w[o,c,ki,kj].
Tensor<double> conv_ref(const Tensor<double>& x, const Tensor<double>& w, Index s, Index p, Index d) {
    const Index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), O = w.dim(0), kh = w.dim(2), kw = w.dim(3);
    const Index Ho = (H + 2 * p - d * (kh - 1) - 1) / s + 1, Wo = (W + 2 * p - d * (kw - 1) - 1) / s + 1;
    Tensor<double> y = Tensor<double>::zeros({N, O, Ho, Wo});
    for (Index n = 0; n < N; ++n)
        for (Index o = 0; o < O; ++o)
            for (Index i = 0; i < Ho; ++i)
                for (Index j = 0; j < Wo; ++j) {
                    double acc = 0;
                    for (Index c = 0; c < C; ++c)
                        for (Index ki = 0; ki < kh; ++ki)
                            for (Index kj = 0; kj < kw; ++kj) {
                                const Index iy = i * s - p + ki * d, ix = j * s - p + kj * d;
                                if (iy >= 0 && iy < H && ix >= 0 && ix < W) acc += x.at({n, c, iy, ix}) * w.at({o, c, ki, kj});
                            }
                    y.at({n, o, i, j}) = acc;
                }
    return y;
}

// Direct transposed convolution: every input pixel scatters its kernel-weighted value.
Tensor<double> conv_transpose_ref(const Tensor<double>& y, const Tensor<double>& w, Index s, Index p, Index op, Index d) {
    const Index N = y.dim(0), Ci = y.dim(1), H = y.dim(2), W = y.dim(3), Co = w.dim(1), kh = w.dim(2), kw = w.dim(3);
    const Index Ho = (H - 1) * s - 2 * p + d * (kh - 1) + op + 1, Wo = (W - 1) * s - 2 * p + d * (kw - 1) + op + 1;
    Tensor<double> x = Tensor<double>::zeros({N, Co, Ho, Wo});
    for (Index n = 0; n < N; ++n)
        for (Index ci = 0; ci < Ci; ++ci)
            for (Index i = 0; i < H; ++i)
                for (Index j = 0; j < W; ++j)
                    for (Index co = 0; co < Co; ++co)
                        for (Index ki = 0; ki < kh; ++ki)
                            for (Index kj = 0; kj < kw; ++kj) {
                                const Index oy = i * s - p + ki * d, ox = j * s - p + kj * d;
                                if (oy >= 0 && oy < Ho && ox >= 0 && ox < Wo)
                                    x.at({n, co, oy, ox}) += y.at({n, ci, i, j}) * w.at({ci, co, ki, kj});
                            }
    return x;
}

Tensor<double> pool_ref(const Tensor<double>& x, Index k, Index s, Index p, bool is_max) {
    const Index N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
    const Index Ho = (H + 2 * p - k) / s + 1, Wo = (W + 2 * p - k) / s + 1;
    Tensor<double> y = Tensor<double>::zeros({N, C, Ho, Wo});
    for (Index n = 0; n < N; ++n)
        for (Index c = 0; c < C; ++c)
            for (Index i = 0; i < Ho; ++i)
                for (Index j = 0; j < Wo; ++j) {
                    double acc = is_max ? -INFINITY : 0;
                    for (Index a = 0; a < k; ++a)
                        for (Index b = 0; b < k; ++b) {
                            const Index iy = i * s - p + a, ix = j * s - p + b;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                            acc = is_max ? std::max(acc, x.at({n, c, iy, ix})) : acc + x.at({n, c, iy, ix});
                        }
                    y.at({n, c, i, j}) = is_max ? acc : acc / static_cast<double>(k * k);
                }
    return y;
}

}  // namespace

TEST_CASE("reductions over all elements and over each axis") {
    struct Red {
        const char* name;
        std::function<V(const V&, std::optional<int>, bool)> op;
        std::function<double(const std::vector<double>&)> f;
    };
    const std::vector<Red> reds = {
        {"sum", [](const V& x, auto a, bool k) { return sum(x, a, k); }, vsum},
        {"mean", [](const V& x, auto a, bool k) { return mean(x, a, k); },
         [](const std::vector<double>& v) { return vsum(v) / static_cast<double>(v.size()); }},
        {"max", [](const V& x, auto a, bool k) { return max(x, a, k); },
         [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); }},
        {"min", [](const V& x, auto a, bool k) { return min(x, a, k); },
         [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }},
        {"logsumexp", [](const V& x, auto a, bool k) { return logsumexp(x, a, k); },
         [](const std::vector<double>& v) {
             double s = 0;
             for (double x : v) s += std::exp(x);
             return std::log(s);
         }},
        {"var", [](const V& x, auto a, bool k) { return var(x, a, k); },
         [](const std::vector<double>& v) {
             const double m = vsum(v) / static_cast<double>(v.size());
             double s = 0;
             for (double x : v) s += (x - m) * (x - m);
             return s / static_cast<double>(v.size() - 1);
         }},
        {"norm2", [](const V& x, auto a, bool k) { return norm2(x, a, k); },
         [](const std::vector<double>& v) {
             double s = 0;
             for (double x : v) s += x * x;
             return std::sqrt(s);
         }},
    };
    for (const auto& r : reds)
        for (std::optional<int> axis : {std::optional<int>{}, std::optional<int>{0}, std::optional<int>{1}, std::optional<int>{-1}})
            for (bool keep : {false, true}) {
                std::string name = std::string(r.name) + (axis ? " axis " + std::to_string(*axis) : " all") + (keep ? " keepdim" : "");
                check_op({name, {{2, 3, 4}}, -2, 2, [op = r.op, axis, keep](const Vs& v) { return op(v[0], axis, keep); },
                          [f = r.f, axis, keep](const Ts& in) { return reduce_ref(in[0], axis, keep, f); }});
            }
}

TEST_CASE("reductions over several axes at once") {
    // The reference groups the elements by their coordinates on the axes that remain.
    auto reference = [](const Tensor<double>& x, std::vector<int> axes, bool keep,
                        const std::function<double(const std::vector<double>&)>& f) {
        const Shape& s = x.shape();
        const int r = s.rank();
        std::vector<bool> reduced(static_cast<std::size_t>(r), false);
        for (const int a : axes) reduced[static_cast<std::size_t>((a + r) % r)] = true;
        std::vector<Index> out_dims;
        for (int d = 0; d < r; ++d)
            if (!reduced[static_cast<std::size_t>(d)]) out_dims.push_back(s[d]);
            else if (keep) out_dims.push_back(1);
        std::map<std::vector<Index>, std::vector<double>> groups;  // ordered as the result's elements
        const Tensor<double> c = x.contiguous();
        for (Index i = 0; i < c.numel(); ++i) {
            std::vector<Index> key;
            Index rest = i, stride = c.numel();
            for (int d = 0; d < r; ++d) {
                stride /= s[d];
                if (!reduced[static_cast<std::size_t>(d)]) key.push_back(rest / stride);
                rest %= stride;
            }
            groups[key].push_back(c.data()[i]);
        }
        Tensor<double> out = Tensor<double>::zeros(Shape(std::span<const Index>(out_dims)));
        Index k = 0;
        for (const auto& [key, values] : groups) out.data()[k++] = f(values);
        return out;
    };
    const auto sum_f = [](const std::vector<double>& v) { return vsum(v); };
    const auto mean_f = [](const std::vector<double>& v) { return vsum(v) / static_cast<double>(v.size()); };
    const auto max_f = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
    const auto lse_f = [](const std::vector<double>& v) {
        double t = 0;
        for (double x : v) t += std::exp(x);
        return std::log(t);
    };
    for (const std::vector<int>& axes : {std::vector<int>{1, 2}, std::vector<int>{-1, 0}, std::vector<int>{0, 1, 2}}) {
        for (bool keep : {false, true}) {
            const Axes a = axes.size() == 2 ? Axes{axes[0], axes[1]} : Axes{axes[0], axes[1], axes[2]};
            const std::string tag = " over " + std::to_string(axes.size()) + " axes" + (keep ? " keepdim" : "");
            check_op({"sum" + tag, {{2, 3, 4}}, -2, 2, [a, keep](const Vs& v) { return sum(v[0], a, keep); },
                      [&, axes, keep](const Ts& in) { return reference(in[0], axes, keep, sum_f); }});
            check_op({"mean" + tag, {{2, 3, 4}}, -2, 2, [a, keep](const Vs& v) { return mean(v[0], a, keep); },
                      [&, axes, keep](const Ts& in) { return reference(in[0], axes, keep, mean_f); }});
            check_op({"max" + tag, {{2, 3, 4}}, -2, 2, [a, keep](const Vs& v) { return max(v[0], a, keep); },
                      [&, axes, keep](const Ts& in) { return reference(in[0], axes, keep, max_f); }});
            check_op({"logsumexp" + tag, {{2, 3, 4}}, -2, 2, [a, keep](const Vs& v) { return logsumexp(v[0], a, keep); },
                      [&, axes, keep](const Ts& in) { return reference(in[0], axes, keep, lse_f); }});
        }
    }
    // The form research code writes: per-sample sums of an expression over C, H and W.
    const V x(Tensor<double>::arange(24).reshape({2, 3, 2, 2}), true);
    CHECK(sum(x * x, {1, 2, 3}).shape() == Shape{2});
    CHECK(sum(x * x, {1, 2, 3}).value().data()[1] == doctest::Approx(vsum([] {
              std::vector<double> v;
              for (int i = 12; i < 24; ++i) v.push_back(double(i) * i);
              return v;
          }())));
    CHECK_THROWS_WITH_AS(sum(x, {1, -3}), doctest::Contains("axis -3 is given twice"), Error);
    CHECK_THROWS_WITH_AS(sum(x, {1, 4}), doctest::Contains("4"), Error);
}

TEST_CASE("logsumexp is stable and argmax picks the first maximum") {
    V x(Tensor<double>::from({3}, {1000, 1000, -INFINITY}));
    CHECK(logsumexp(x).item() == doctest::Approx(1000 + std::log(2.0)));
    V all_neg_inf(Tensor<double>::full({2}, -INFINITY));
    CHECK(logsumexp(all_neg_inf).item() == -INFINITY);
    Tensor<double> t = Tensor<double>::from({2, 3}, {1, 5, 5, 7, 2, 7});
    CHECK(argmax(t, 1) == std::vector<Index>{1, 0});
    CHECK(argmax(t, 0) == std::vector<Index>{1, 0, 1});
    // gradient at x = 0 of the norm is 0, not NaN
    V z(Tensor<double>::zeros({3}), true);
    sum(norm2(z)).backward();
    CHECK(z.grad().to_vector() == std::vector<double>{0, 0, 0});
}

TEST_CASE("matmul: plain, batched, shared right factor, transposed views") {
    check_op({"matmul", {{3, 4}, {4, 5}}, -1, 1, [](const Vs& v) { return matmul(v[0], v[1]); },
              [](const Ts& in) { return matmul_ref(in[0], in[1]); }});
    check_op({"batched matmul", {{2, 3, 4}, {2, 4, 2}}, -1, 1, [](const Vs& v) { return matmul(v[0], v[1]); },
              [](const Ts& in) { return matmul_ref(in[0], in[1]); }});
    check_op({"matmul [B,M,K]x[K,N]", {{2, 3, 4}, {4, 2}}, -1, 1, [](const Vs& v) { return matmul(v[0], v[1]); },
              [](const Ts& in) { return matmul_ref(in[0], in[1]); }});
    check_op({"matmul at depth 1 (an outer product)", {{3, 1}, {1, 5}}, -1, 1, [](const Vs& v) { return matmul(v[0], v[1]); },
              [](const Ts& in) { return matmul_ref(in[0], in[1]); }});
    check_op({"matmul at depth 1 of transposed views", {{1, 3}, {5, 1}}, -1, 1,
              [](const Vs& v) { return matmul(transpose(v[0]), transpose(v[1])); },
              [](const Ts& in) { return matmul_ref(in[0].transpose().contiguous(), in[1].transpose().contiguous()); }});
    check_op({"matmul of transposed views", {{4, 3}, {5, 4}}, -1, 1,
              [](const Vs& v) { return matmul(transpose(v[0]), transpose(v[1])); },
              [](const Ts& in) { return matmul_ref(in[0].transpose().contiguous(), in[1].transpose().contiguous()); }});
    V a(Tensor<double>::zeros({64, 784})), b(Tensor<double>::zeros({512, 10}));
    CHECK_THROWS_WITH_AS(matmul(a, b), "matmul: inner dimensions differ: [64,784] x [512,10]", Error);
}

namespace {
const ConvBackend kConvBackends[] = {ConvBackend::automatic, ConvBackend::im2col, ConvBackend::direct,
                                     ConvBackend::samples_innermost};
const char* backend_name(ConvBackend b) {
    switch (b) {
        case ConvBackend::automatic: return "automatic";
        case ConvBackend::im2col: return "im2col";
        case ConvBackend::direct: return "direct";
        case ConvBackend::samples_innermost: return "samples innermost";
    }
    return "?";
}
}  // namespace

TEST_CASE("conv2d and conv_transpose2d on every backend: values, gradients, second order") {
    // Every row on every backend (ForceConvBackend; a backend without a kernel for a
    // primitive or geometry leaves it to im2col). Automatically: "same" geometries (s1 p1 d1,
    // s1 p2 d2) take im2col's shifted block copy and the input gradient computed as a
    // convolution with the flipped kernel; s2 and s3 take im2col's strided gathers and
    // col2im's strided scatter. With at most 4 output channels and stride 1, the forward pass
    // and the weight gradient take the direct kernels instead of im2col: O = 3 checks those,
    // O = 6 im2col. The bias is added as the output is written: on two threads, 2 samples
    // make groups of one (added after each sample's GEMM) and 4 samples groups of two (added
    // in from_group's copy). Forced into the samples-innermost layout, these few samples make
    // groups of 1 and 2 (one per thread).
    for (ConvBackend backend : kConvBackends) {
    const ForceConvBackend force(backend);
    const std::string on = std::string(", ") + backend_name(backend);
    for (Index N : {2, 4})
        for (Index O : {3, 6})
            for (auto [s, p, d] : {std::tuple<Index, Index, Index>{1, 0, 1}, {1, 1, 1}, {2, 1, 1}, {1, 2, 2}, {3, 2, 2}}) {
                check_op({"conv2d N" + std::to_string(N) + " O" + std::to_string(O) + " s" + std::to_string(s) + " p" +
                              std::to_string(p) + " d" + std::to_string(d) + on,
                          {{N, 2, 5, 5}, {O, 2, 3, 3}, {O}}, -1, 1,
                          [=](const Vs& v) { return conv2d(v[0], v[1], v[2], {s, p, d}); },
                          [=](const Ts& in) {
                              return Tensor<double>(conv_ref(in[0], in[1], s, p, d) + in[2].reshape({1, O, 1, 1}));
                          }});
            }
    check_op({"conv2d stride 1, one output channel, rectangular image and kernel" + on, {{3, 2, 4, 7}, {1, 2, 2, 3}}, -1, 1,
              [](const Vs& v) { return conv2d(v[0], v[1], {}, {1, 2, 1}); },
              [](const Ts& in) { return conv_ref(in[0], in[1], 1, 2, 1); }});
    check_op({"conv2d stride 2, rectangular image and kernel" + on, {{2, 2, 6, 7}, {4, 2, 2, 3}}, -1, 1,
              [](const Vs& v) { return conv2d(v[0], v[1], {}, {2, 1, 1}); },
              [](const Ts& in) { return conv_ref(in[0], in[1], 2, 1, 1); }});
    check_op({"conv2d 1x1" + on, {{2, 3, 2, 2}, {4, 3, 1, 1}}, -1, 1, [](const Vs& v) { return conv2d(v[0], v[1]); },
              [](const Ts& in) { return conv_ref(in[0], in[1], 1, 0, 1); }});
    for (auto [s, p, op] : {std::tuple<Index, Index, Index>{1, 0, 0}, {2, 1, 1}}) {
        check_op({"conv_transpose2d s" + std::to_string(s) + " p" + std::to_string(p) + " op" + std::to_string(op) + on,
                  {{2, 3, 3, 3}, {3, 2, 3, 3}}, -1, 1,
                  [=](const Vs& v) { return conv_transpose2d(v[0], v[1], {}, {s, p, op, 1}); },
                  [=](const Ts& in) { return conv_transpose_ref(in[0], in[1], s, p, op, 1); }});
    }
    }
    V x(Tensor<double>::zeros({2, 3, 8, 8})), w(Tensor<double>::zeros({4, 2, 3, 3}));
    CHECK_THROWS_WITH_AS(conv2d(x, w), "conv2d: input has 3 channels but weight expects 2: [2,3,8,8] * [4,2,3,3]", Error);
}

TEST_CASE("conv2d with the samples innermost: values, gradients, second order") {
    // Small images with at least 8 samples per thread take the samples-innermost backend for the forward pass
    // and the input gradient (the weight gradient keeps im2col). On 1 and 2 threads, 16
    // samples make groups of 16 and 8 (whole SIMD tiles in the transposes for doubles) and 19
    // samples groups of 19, 10 and 9 (tile edges; pixels' runs cut at row-panel boundaries).
    // Stride 1 reaches the layout twice: forward, and the input gradient as a convolution.
    const int threads = num_threads();
    using Geometry = std::tuple<Shape, Shape, Index, Index, Index>;  // x, w, stride, padding, dilation
    for (int t : {1, 2}) {
        set_num_threads(t);
        for (Index N : {16, 19})
            for (auto [xs, ws, s, p, d] : {Geometry{{N, 2, 5, 5}, {6, 2, 3, 3}, 1, 1, 1}, Geometry{{N, 2, 5, 5}, {6, 2, 3, 3}, 2, 1, 1},
                                           Geometry{{N, 2, 5, 5}, {6, 2, 3, 3}, 3, 2, 2}, Geometry{{N, 2, 6, 7}, {5, 2, 2, 3}, 2, 1, 1}}) {
                const detail::ConvGeometry g{N, xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], s, p, d,
                                             detail::conv_out_size(xs[2], ws[2], s, p, d), detail::conv_out_size(xs[3], ws[3], s, p, d)};
                REQUIRE(detail::chwn_group(g) > 0);
                const Index O = ws[0];
                check_op({"conv2d samples innermost, " + std::to_string(t) + " threads, s" + std::to_string(s) + " p" + std::to_string(p) +
                              " d" + std::to_string(d),
                          {xs, ws, {O}}, -1, 1, [=](const Vs& v) { return conv2d(v[0], v[1], v[2], {s, p, d}); },
                          [=](const Ts& in) { return Tensor<double>(conv_ref(in[0], in[1], s, p, d) + in[2].reshape({1, O, 1, 1})); }});
            }
    }
    set_num_threads(threads);
}

TEST_CASE("a stack of convolutions keeps the samples-innermost layout between them, to second order") {
    // On one thread, 16 samples are one group: each convolution leaves its result in the
    // layout, the activation keeps it, the next convolution (and its input gradient) read it
    // without a transpose, flatten is a view in it, and linear() reads that view as a
    // column-major matrix and returns the input gradient in it. Values, gradients and second
    // order against direct sums; the leaky ReLU fused into a convolution and the two ops both
    // appear.
    const int threads = num_threads();
    set_num_threads(1);
    auto stack = [](const V& x, const V& w1, const V& b1, const V& w2, const V& w3) {
        const V h = conv2d(V(leaky_relu(conv2d(x, w1, b1, {2, 1, 1}), 0.2)), w2, V{}, {1, 1, 1});
        return linear(flatten(conv2d(h, w2, V{}, {1, 1, 1, ConvActivation::leaky_relu(0.1)})), w3);
    };
    Generator gen(8);
    const V x(uniform<double>({16, 2, 6, 6}, gen, -1, 1), true), w1(uniform<double>({3, 2, 3, 3}, gen, -1, 1));
    const V hidden = leaky_relu(conv2d(x, w1, V(Tensor<double>::zeros({3})), {2, 1, 1}), 0.2);
    CHECK(detail::is_samples_innermost(hidden.value()));
    const V flat = flatten(hidden);
    CHECK(detail::is_samples_innermost(flat.value()));
    CHECK(flat.value().shares_storage_with(hidden.value()));
    const V w(uniform<double>({2, 27}, gen, -1, 1));
    CHECK(detail::is_samples_innermost(grad(sum(linear(flat, w)), {x})[0].value()));
    check_op({"conv2d -> leaky_relu -> conv2d -> conv2d with leaky_relu -> flatten -> linear, one group",
              {{16, 2, 6, 6}, {3, 2, 3, 3}, {3}, {3, 3, 3, 3}, {2, 27}}, -1, 1,
              [=](const Vs& v) { return stack(v[0], v[1], v[2], v[3], v[4]); },
              [](const Ts& in) {
                  const Tensor<double> y1 = conv_ref(in[0], in[1], 2, 1, 1) + in[2].reshape({1, 3, 1, 1});
                  const Tensor<double> y2 = conv_ref(Tensor<double>(where(y1 > 0.0, y1, y1 * 0.2)), in[3], 1, 1, 1);
                  const Tensor<double> y3 = conv_ref(y2, in[3], 1, 1, 1);
                  const Tensor<double> h = Tensor<double>(where(y3 > 0.0, y3, y3 * 0.1)).reshape({16, 27});
                  Tensor<double> out = Tensor<double>::zeros({16, 2});
                  for (Index n = 0; n < 16; ++n)
                      for (Index o = 0; o < 2; ++o)
                          for (Index k = 0; k < 27; ++k) out.at({n, o}) += h.at({n, k}) * in[4].at({o, k});
                  return out;
              }});
    set_num_threads(threads);
}

TEST_CASE("conv2d with a leaky ReLU as its epilogue: every backend, to second order") {
    // The activation is applied as each backend stores the output, and its derivative as the
    // gradient is read: in the samples-innermost kernel itself for one group (automatic, 1
    // thread: 8 samples are one group), else by a pass before the adjoint; forced into the
    // layout on 2 threads, two groups. The direct kernel takes stride 1 (3 output channels),
    // the others stride 2. A zero slope is a ReLU; a negative one is the two ops. Against
    // leaky_relu of the direct sums; the sampler's case (the input gradient alone, no graph)
    // against the two ops.
    const int threads = num_threads();
    struct Case {
        ConvBackend backend;
        int threads;
        double slope;
    };
    std::vector<Case> cases;
    for (ConvBackend backend : kConvBackends)
        for (int t : {1, 2}) cases.push_back({backend, t, 0.2});
    cases.push_back({ConvBackend::automatic, 1, 0.0});
    cases.push_back({ConvBackend::automatic, 1, -0.5});
    for (const Case& c : cases) {
        const ForceConvBackend force(c.backend);
        set_num_threads(c.threads);
        const Index s = c.backend == ConvBackend::direct ? 1 : 2;
        const double slope = c.slope;
        const std::string name = "conv2d with leaky_relu(" + std::to_string(slope) + "), stride " + std::to_string(s) + ", " +
                                 std::to_string(c.threads) + " threads, " + backend_name(c.backend);
        const Conv2dOptions o{s, 1, 1, ConvActivation::leaky_relu(slope)};
        check_op({name, {{8, 2, 5, 5}, {3, 2, 3, 3}, {3}}, -1, 1,
                  [=](const Vs& v) { return conv2d(v[0], v[1], v[2], o); },
                  [=](const Ts& in) {
                      const Tensor<double> y = conv_ref(in[0], in[1], s, 1, 1) + in[2].reshape({1, 3, 1, 1});
                      return Tensor<double>(where(y > 0.0, y, y * slope));
                  }});
        Generator gen(3);
        const V x(uniform<double>({8, 2, 5, 5}, gen, -1, 1), true), w(uniform<double>({3, 2, 3, 3}, gen, -1, 1)),
            b(uniform<double>({3}, gen, -1, 1));
        const Index out = s == 1 ? 5 : 3;
        const V weights(uniform<double>({8, 3, out, out}, gen, -1, 1));
        // Only x needs a gradient and no graph is recorded: the sampler's path (conv_adjoint_through).
        const Tensor<double> fused = grad(sum(conv2d(x, w, b, o) * weights), {x})[0].value().contiguous();
        const Conv2dOptions plain{s, 1, 1};
        const Tensor<double> separate = grad(sum(leaky_relu(conv2d(x, w, b, plain), slope) * weights), {x})[0].value().contiguous();
        CAPTURE(name);
        double worst = 0;
        for (Index i = 0; i < fused.numel(); ++i) worst = std::max(worst, std::fabs(fused.flat(i) - separate.flat(i)));
        CHECK(worst <= 1e-13);
    }
    set_num_threads(threads);
    V x(Tensor<double>::zeros({2, 1, 4, 4})), w(Tensor<double>::zeros({1, 1, 3, 3}));
    CHECK_THROWS_WITH_AS(conv2d(x, w, V{}, {1, 1, 1, ConvActivation::leaky_relu(std::nan(""))}),
                         "conv2d: the leaky ReLU's slope must be finite, got nan", Error);
}

namespace {
// The largest error of `got` relative to 1 + |want|, element by element.
double worst_error(const Tensor<double>& got, const Tensor<double>& want) {
    REQUIRE(got.shape() == want.shape());
    double worst = 0;
    for (Index i = 0; i < got.numel(); ++i)
        worst = std::max(worst, std::fabs(got.flat(i) - want.flat(i)) / (1 + std::fabs(want.flat(i))));
    return worst;
}
}  // namespace

TEST_CASE("conv2d's gradients are the same on every run with two threads, whichever thread sums which samples") {
    // The weight gradient sums over the samples in private parts (private_sum_parts) added
    // in order: bit for bit the same on every run, on every backend.
    const int threads = num_threads();
    set_num_threads(2);
    Generator gen(11);
    const Tensor<float> x0 = uniform<float>({48, 4, 9, 9}, gen, -1, 1), w0 = uniform<float>({8, 4, 3, 3}, gen, -1, 1);
    for (ConvBackend backend : kConvBackends) {
        const ForceConvBackend force(backend);
        CAPTURE(backend_name(backend));
        const Index s = backend == ConvBackend::direct ? 1 : 2;
        std::vector<float> first;
        for (int run = 0; run < 6; ++run) {
            Var<float> x(x0, true), w(w0, true);
            backward(sum(square(conv2d(x, w, Var<float>{}, {s, 1, 1}))));
            const std::vector<float> now = w.grad().contiguous().to_vector();
            if (run == 0) first = now;
            else CHECK(now == first);
        }
    }
    set_num_threads(threads);
}

TEST_CASE("conv2d with the samples innermost: products deeper than one chunk of the kernel") {
    // The kernel runs down the depth in chunks of kPanelDepth (256) and accumulates the later
    // chunks: a forward patch of 30·3·3 = 270 values, and an input gradient summed over 260
    // output channels (conv_transpose2d with stride 2 is that adjoint). Values only, against
    // the direct sums: the gradients of this path are checked above on small shapes.
    const int threads = num_threads();
    set_num_threads(2);
    Generator gen(5);
    const Tensor<double> x = uniform<double>({16, 30, 4, 4}, gen, -1, 1), w = uniform<double>({5, 30, 3, 3}, gen, -1, 1);
    REQUIRE(detail::chwn_group(detail::ConvGeometry{16, 30, 4, 4, 5, 3, 3, 1, 1, 1, 4, 4}) > 0);
    CHECK(worst_error(conv2d(V(x), V(w), V{}, {1, 1, 1}).value(), conv_ref(x, w, 1, 1, 1)) <= 1e-12);
    const Tensor<double> y = uniform<double>({16, 260, 3, 3}, gen, -1, 1), wt = uniform<double>({260, 2, 3, 3}, gen, -1, 1);
    REQUIRE(detail::chwn_group(detail::ConvGeometry{16, 2, 5, 5, 260, 3, 3, 2, 1, 1, 3, 3}) > 0);
    CHECK(worst_error(conv_transpose2d(V(y), V(wt), V{}, {2, 1, 0, 1}).value(), conv_transpose_ref(y, wt, 2, 1, 0, 1)) <= 1e-12);
    set_num_threads(threads);
}

TEST_CASE("conv2d with the samples innermost: a freed image's address given to a new image meets no stale table") {
    // The kernel's tables are kept per thread and keyed by the image's address: here each
    // image is freed before the next is made, so the allocator hands the same address to
    // images with other values (checked: some address repeats), and every result must still
    // match the direct sums.
    const int threads = num_threads();
    set_num_threads(1);
    Generator gen(10);
    const Tensor<double> w0 = uniform<double>({3, 2, 3, 3}, gen, -1, 1), w1 = uniform<double>({4, 3, 3, 3}, gen, -1, 1);
    std::vector<const double*> addresses;
    for (int i = 0; i < 12; ++i) {
        const Tensor<double> x = uniform<double>({16, 2, 12, 12}, gen, -1, 1);
        const Tensor<double> y = uniform<double>({16, 3, 3, 3}, gen, -1, 1);
        Tensor<double> h = conv2d(V(x), V(w0), V{}, {2, 1, 1}).value();
        REQUIRE(detail::is_samples_innermost(h));
        addresses.push_back(h.data());
        INFO("image ", i);
        CHECK(worst_error(conv2d(V(h), V(w1), V{}, {2, 1, 1}).value().contiguous(),
                          conv_ref(conv_ref(x, w0, 2, 1, 1), w1, 2, 1, 1)) <= 1e-12);
        CHECK(worst_error(conv_transpose2d(V(y), V(w0), V{}, {2, 1, 1, 1}).value().contiguous(),
                          conv_transpose_ref(y, w0, 2, 1, 1, 1)) <= 1e-12);
    }  // h, x and y freed here, their addresses free for the next round
    std::sort(addresses.begin(), addresses.end());
    CHECK(std::adjacent_find(addresses.begin(), addresses.end()) != addresses.end());
    set_num_threads(threads);
}

TEST_CASE("conv2d with the samples innermost: the kernel's tables, kept per thread, serve many images") {
    // One group (one thread): the second convolution reads the first one's result in place
    // through tables of where each vector lies, kept per thread for a few images per
    // geometry and moved to another image when there are more. Nine images alive at once,
    // visited three times, each result against the direct sums; likewise the input
    // gradients (conv_transpose2d), each written into a new image.
    const int threads = num_threads();
    set_num_threads(1);
    Generator gen(9);
    const Tensor<double> w0 = uniform<double>({3, 2, 3, 3}, gen, -1, 1), w1 = uniform<double>({4, 3, 3, 3}, gen, -1, 1);
    std::vector<Tensor<double>> x, h, want, y_in;
    for (int i = 0; i < 9; ++i) {
        x.push_back(uniform<double>({16, 2, 12, 12}, gen, -1, 1));
        h.push_back(conv2d(V(x.back()), V(w0), V{}, {2, 1, 1}).value());
        REQUIRE(detail::is_samples_innermost(h.back()));
        want.push_back(conv_ref(conv_ref(x.back(), w0, 2, 1, 1), w1, 2, 1, 1));
        y_in.push_back(uniform<double>({16, 3, 3, 3}, gen, -1, 1));
    }
    std::vector<Tensor<double>> kept;  // every result stays alive: each is a new image
    for (int round = 0; round < 3; ++round)
        for (int i = 0; i < 9; ++i) {
            INFO("round ", round, ", image ", i);
            kept.push_back(conv2d(V(h[static_cast<std::size_t>(i)]), V(w1), V{}, {2, 1, 1}).value());
            CHECK(worst_error(kept.back().contiguous(), want[static_cast<std::size_t>(i)]) <= 1e-12);
            kept.push_back(conv_transpose2d(V(y_in[static_cast<std::size_t>(i)]), V(w0), V{}, {2, 1, 1, 1}).value());
            CHECK(worst_error(kept.back().contiguous(), conv_transpose_ref(y_in[static_cast<std::size_t>(i)], w0, 2, 1, 1, 1)) <= 1e-12);
        }
    set_num_threads(threads);
}

TEST_CASE("pooling and upsampling") {
    check_op({"avg_pool2d", {{2, 2, 5, 5}}, -1, 1, [](const Vs& v) { return avg_pool2d(v[0], 3, 2, 1); },
              [](const Ts& in) { return pool_ref(in[0], 3, 2, 1, false); }});
    // 2x2 windows that tile the input take the row-wise kernels; on 5x5 the last row and
    // column are left out, which takes the general ones.
    for (Index side : {4, 5})
        check_op({"avg_pool2d 2x2 on " + std::to_string(side) + "x" + std::to_string(side), {{2, 3, side, side}}, -1, 1,
                  [](const Vs& v) { return avg_pool2d(v[0], 2); },
                  [](const Ts& in) { return pool_ref(in[0], 2, 2, 0, false); }});
    check_op({"max_pool2d", {{2, 2, 4, 4}}, -1, 1, [](const Vs& v) { return max_pool2d(v[0], 2); },
              [](const Ts& in) { return pool_ref(in[0], 2, 2, 0, true); }});
    for (Index f : {2, 3})
        check_op({"upsample2d x" + std::to_string(f), {{2, 2, 2, 3}}, -1, 1, [f](const Vs& v) { return upsample2d(v[0], f); },
                  [f](const Ts& in) {
                      Tensor<double> out = Tensor<double>::zeros({2, 2, 2 * f, 3 * f});
                      for (Index n = 0; n < 2; ++n)
                          for (Index c = 0; c < 2; ++c)
                              for (Index i = 0; i < 2 * f; ++i)
                                  for (Index j = 0; j < 3 * f; ++j) out.at({n, c, i, j}) = in[0].at({n, c, i / f, j / f});
                      return out;
                  }});
}

namespace {
Tensor<double> upsample_ref(const Tensor<double>& x, Index f) {
    const Shape& s = x.shape();
    Tensor<double> out = Tensor<double>::zeros({s[0], s[1], s[2] * f, s[3] * f});
    for (Index n = 0; n < s[0]; ++n)
        for (Index c = 0; c < s[1]; ++c)
            for (Index i = 0; i < s[2] * f; ++i)
                for (Index j = 0; j < s[3] * f; ++j) out.at({n, c, i, j}) = x.at({n, c, i / f, j / f});
    return out;
}
}  // namespace

TEST_CASE("upsample_conv2d equals conv2d of the upsampled input, to second order") {
    // (factor, kernel): 2x2 phase kernels (f2 k3), 3x3 ones with uneven phases (f3 k3, f2 k5),
    // 1x1 (f2 k1), and f = 1 where it is a plain "same" convolution.
    // Every convolution backend.
    for (ConvBackend backend : kConvBackends)
    for (auto [f, k] : {std::pair<Index, Index>{2, 3}, {3, 3}, {2, 5}, {2, 1}, {1, 3}}) {
        const ForceConvBackend force(backend);
        const Index O = 2, C = 2;
        check_op({"upsample_conv2d f" + std::to_string(f) + " k" + std::to_string(k) + ", " + backend_name(backend),
                  {{2, C, 3, 2}, {O, C, k, k}, {O}}, -1,
                  1, [f](const Vs& v) { return upsample_conv2d(v[0], v[1], v[2], f); },
                  [f, k](const Ts& in) {
                      return Tensor<double>(conv_ref(upsample_ref(in[0], f), in[1], 1, (k - 1) / 2, 1) +
                                            in[2].reshape({1, O, 1, 1}));
                  }});
    }
    V x(Tensor<double>::zeros({2, 3, 4, 4})), even(Tensor<double>::zeros({4, 3, 2, 2})), w(Tensor<double>::zeros({4, 2, 3, 3}));
    CHECK_THROWS_WITH_AS(upsample_conv2d(x, even, V{}, 2),
                         "upsample_conv2d: expected a square kernel of odd size [O,C,k,k] (\"same\" padding), got [4,3,2,2]",
                         Error);
    CHECK_THROWS_WITH_AS(upsample_conv2d(x, w, V{}, 2),
                         "upsample_conv2d: input has 3 channels but weight expects 2: [2,3,4,4] * [4,2,3,3]", Error);
}

TEST_CASE("batch_normalize: per-channel statistics, gradients to second order") {
    // [N, C] (the row-wise kernel), [N, C, L] and [N, C, H, W] (per-channel segments).
    for (const Shape& s : {Shape{5, 3}, Shape{3, 2, 4}, Shape{2, 3, 2, 3}}) {
        check_op({"batch_normalize " + s.str(), {s}, -1, 1, [](const Vs& v) { return batch_normalize(v[0], 1e-3).y; },
                  [](const Ts& in) {
                      const Shape& xs = in[0].shape();
                      const Index N = xs[0], C = xs[1], S = xs.numel() / (N * C);
                      Tensor<double> out = Tensor<double>::empty(xs);
                      for (Index c = 0; c < C; ++c) {
                          double m = 0, v = 0;
                          for (Index n = 0; n < N; ++n)
                              for (Index k = 0; k < S; ++k) m += in[0].data()[(n * C + c) * S + k] / double(N * S);
                          for (Index n = 0; n < N; ++n)
                              for (Index k = 0; k < S; ++k) v += std::pow(in[0].data()[(n * C + c) * S + k] - m, 2) / double(N * S);
                          for (Index n = 0; n < N; ++n)
                              for (Index k = 0; k < S; ++k)
                                  out.data()[(n * C + c) * S + k] = (in[0].data()[(n * C + c) * S + k] - m) / std::sqrt(v + 1e-3);
                      }
                      return out;
                  }});
    }
    const Tensor<double> x = Tensor<double>::from({4, 1}, {1, 2, 3, 5});
    const BatchNormalized<double> bn = batch_normalize(V(x), 1e-3);
    CHECK(bn.mean.to_vector() == std::vector<double>{2.75});
    CHECK(bn.var.data()[0] == doctest::Approx(2.1875).epsilon(1e-15));  // biased: Σ(x-μ)²/4
    CHECK_THROWS_WITH_AS(batch_normalize(V(Tensor<double>::zeros({1, 3})), 1e-5),
                         "batch_normalize: needs more than one value per channel, got input [1,3]", Error);
}

TEST_CASE("shape ops: reshape, transpose, slice, concat, index_select, one_hot") {
    check_op({"reshape", {{2, 6}}, -1, 1, [](const Vs& v) { return V(square(reshape(v[0], {3, -1}))); },
              [](const Ts& in) { return Tensor<double>(square(in[0].reshape({3, 4}))); }});
    check_op({"transpose", {{2, 3, 4}}, -1, 1, [](const Vs& v) { return V(square(transpose(v[0], 0, 2))); },
              [](const Ts& in) { return Tensor<double>(square(in[0].transpose(0, 2).contiguous())); }});
    check_op({"slice", {{4, 5}}, -1, 1, [](const Vs& v) { return V(square(slice(v[0], 1, 1, 5, 2))); },
              [](const Ts& in) { return Tensor<double>(square(in[0].slice(1, 1, 5, 2).contiguous())); }});
    check_op({"concat", {{2, 3}, {2, 2}}, -1, 1, [](const Vs& v) { return V(square(concat(Vs{v[0], v[1]}, 1))); },
              [](const Ts& in) {
                  Tensor<double> out = Tensor<double>::empty({2, 5});
                  for (Index i = 0; i < 2; ++i)
                      for (Index j = 0; j < 5; ++j) out.at({i, j}) = j < 3 ? in[0].at({i, j}) : in[1].at({i, j - 3});
                  return Tensor<double>(square(out));
              }});
    check_op({"index_select", {{4, 3}}, -1, 1, [](const Vs& v) { return V(square(index_select(v[0], {3, 0, 3}))); },
              [](const Ts& in) {
                  Tensor<double> out = Tensor<double>::empty({3, 3});
                  const Index rows[] = {3, 0, 3};
                  for (Index i = 0; i < 3; ++i)
                      for (Index j = 0; j < 3; ++j) out.at({i, j}) = in[0].at({rows[i], j});
                  return Tensor<double>(square(out));
              }});
    CHECK(one_hot<float>({2, 0}, 3).to_vector() == std::vector<float>{0, 0, 1, 1, 0, 0});
    CHECK_THROWS_WITH_AS(one_hot<float>({3}, 3), "one_hot: label 3 out of range [0,3)", Error);
    CHECK_THROWS_WITH_AS(index_select(V(Tensor<double>::zeros({2, 2})), {2}), "index_select: row 2 out of range for shape [2,2]", Error);
}

// Large inputs take the multi-threaded paths: BatchNorm over [N, C] on blocks of channels,
// and a fused elementwise backward whose broadcast inputs (a scale, a bias) have their
// gradients summed in per-thread copies. Both must agree with one thread to rounding and
// with the formulas.
TEST_CASE("threaded BatchNorm [N, C] and fused backward with broadcast inputs agree with one thread") {
    const int saved = num_threads();
    Generator g(3);
    const Tensor<double> x2 = normal<double>({64, 1000}, g), c2 = normal<double>({64, 1000}, g);
    const Tensor<double> x4 = normal<double>({64, 16, 8, 8}, g);
    const Tensor<double> w = normal<double>({1, 16, 1, 1}, g), b = normal<double>({1, 16, 1, 1}, g);
    struct Result {
        std::vector<double> bn_y, bn_gx, fused_gx, fused_gw, fused_gb;
    };
    auto run = [&] {
        Result r;
        const V xv(x2, true);
        const V y = batch_normalize(xv, 1e-5).y;
        sum(V(y * c2)).backward();
        r.bn_y = y.value().to_vector();
        r.bn_gx = xv.grad().to_vector();
        const V xf(x4, true), wf(w, true), bf(b, true);
        const V out = xf * wf + bf;
        sum(V(out * out)).backward();
        r.fused_gx = xf.grad().to_vector(), r.fused_gw = wf.grad().to_vector(), r.fused_gb = bf.grad().to_vector();
        return r;
    };
    set_num_threads(1);
    const Result one = run();
    set_num_threads(2);
    const Result two = run();
    auto close = [](const std::vector<double>& a, const std::vector<double>& b, double tol) {
        double worst = 0, scale = 1;
        for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i])), scale = std::max(scale, std::abs(a[i]));
        return a.size() == b.size() && worst <= tol * scale;
    };
    CHECK(close(one.bn_y, two.bn_y, 1e-12));
    CHECK(close(one.bn_gx, two.bn_gx, 1e-12));
    CHECK(close(one.fused_gx, two.fused_gx, 1e-12));
    CHECK(close(one.fused_gw, two.fused_gw, 1e-12));
    CHECK(close(one.fused_gb, two.fused_gb, 1e-12));
    // A scalar factor: its gradient is summed over the flat run, split across threads.
    const V xs(x4, true), sc(Tensor<double>::from({1}, {1.5}), true);
    sum(V(xs * sc)).backward();
    double total = 0;
    for (Index i = 0; i < x4.numel(); ++i) total += x4.data()[i];
    CHECK(sc.grad().data()[0] == doctest::Approx(total).epsilon(1e-10));
    CHECK(xs.grad().data()[x4.numel() - 1] == 1.5);
    // d/db Σ (x w + b)² = Σ over n, h, w of 2 (x w + b), per channel.
    for (Index ch = 0; ch < 16; ++ch) {
        double expected = 0;
        for (Index n = 0; n < 64; ++n)
            for (Index k = 0; k < 64; ++k) expected += 2 * (x4.data()[(n * 16 + ch) * 64 + k] * w.data()[ch] + b.data()[ch]);
        CHECK(two.fused_gb[static_cast<std::size_t>(ch)] == doctest::Approx(expected).epsilon(1e-10));
    }
    set_num_threads(saved);
}

namespace {

// y = x Wᵀ + b and dx = g W in double, summed directly, with Σ|x_k w_k| per output for
// rounding bounds.
struct LinearRef {
    Tensor<double> y, y_abs, dx, dx_abs;
};
LinearRef linear_ref(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>& b, const Tensor<double>& g) {
    const Index n = x.dim(0), in = x.dim(1), out = w.dim(0);
    LinearRef r{Tensor<double>::zeros({n, out}), Tensor<double>::zeros({n, out}), Tensor<double>::zeros({n, in}),
                Tensor<double>::zeros({n, in})};
    for (Index i = 0; i < n; ++i)
        for (Index o = 0; o < out; ++o)
            for (Index k = 0; k < in; ++k) {
                const double p = x.at({i, k}) * w.at({o, k}), q = g.at({i, o}) * w.at({o, k});
                r.y.data()[i * out + o] += p, r.y_abs.data()[i * out + o] += std::abs(p);
                r.dx.data()[i * in + k] += q, r.dx_abs.data()[i * in + k] += std::abs(q);
            }
    for (Index i = 0; i < n; ++i)
        for (Index o = 0; o < out; ++o) r.y.data()[i * out + o] += b.data()[o], r.y_abs.data()[i * out + o] += std::abs(b.data()[o]);
    return r;
}

// Every element of `got` lies within γ·Σ|terms| of the exact sum: γ_K = K u / (1 - K u) is
// the standard bound for a K-term dot product in precision u, and rounding the inputs and
// the bias to T adds three more roundings per term.
template <Real T>
bool within_dot_bound(const Tensor<T>& got, const Tensor<double>& exact, const Tensor<double>& abs_terms, Index K) {
    const double u = std::numeric_limits<T>::epsilon() / 2, gamma = (K + 3) * u / (1 - (K + 3) * u);
    for (Index i = 0; i < exact.numel(); ++i)
        if (std::abs(static_cast<double>(got.data()[i]) - exact.data()[i]) > gamma * abs_terms.data()[i] + u * std::abs(exact.data()[i]))
            return false;
    return true;
}

template <Real T>
Tensor<T> converted(const Tensor<double>& t) {
    std::vector<T> v;
    for (double d : t.to_vector()) v.push_back(static_cast<T>(d));
    return Tensor<T>::from(t.shape(), v);
}

template <Real T>
void check_packed_linear(Index n, Index in, Index out) {
    INFO("rows ", n, ", in ", in, ", out ", out);
    Generator gen(11);
    const Tensor<double> xd = normal<double>({n, in}, gen), wd = normal<double>({out, in}, gen);
    const Tensor<double> bd = normal<double>({out}, gen), gd = normal<double>({n, out}, gen);
    const LinearRef ref = linear_ref(xd, wd, bd, gd);
    const Var<T> w(converted<T>(wd), true), b(converted<T>(bd), true);
    const Tensor<T> gt = converted<T>(gd);
    auto evaluate = [&] {  // y and dx = (∂y/∂x)ᵀ g through grad(), which writes no parameter
        const Var<T> x(converted<T>(xd), true);
        const Var<T> y = linear(x, w, b);
        const Var<T> dx = grad(sum(Var<T>(y * gt)), {x})[0];
        return std::pair{y.value().contiguous(), dx.value().contiguous()};
    };
    const auto plain = evaluate();
    ConstantWeights scope;
    for (int repeat = 0; repeat < 2; ++repeat) {
        const auto packed = evaluate();
        CHECK(within_dot_bound(packed.first, ref.y, ref.y_abs, in));
        CHECK(within_dot_bound(packed.second, ref.dx, ref.dx_abs, out));
    }
    CHECK(within_dot_bound(plain.first, ref.y, ref.y_abs, in));
    CHECK(within_dot_bound(plain.second, ref.dx, ref.dx_abs, out));
    // The forward and the backward form, each packed once; a weight with fewer outputs than
    // half the kernel's row tile (an energy's last layer) stays on Eigen's GEMV and GEMM.
    CHECK(scope.packs() == (2 * out >= detail::GemmTile<T>::rows ? 2 : 0));
}

// detail::gemm_row_major (the convolutions' kernel, ops/gemm_panels.hpp) for one shape and
// one choice of transposes, against the exact sums: C = op(A)·op(B) (+ C0 when accumulating),
// each element within the dot-product rounding bound γ_{K+1}·Σ|terms|.
template <Real T>
void check_gemm_row_major(Index M, Index N, Index K, bool trans_a, bool trans_b, bool accumulate, Generator& gen) {
    INFO("M ", M, ", N ", N, ", K ", K, ", trans_a ", trans_a, ", trans_b ", trans_b, ", accumulate ", accumulate);
    const Tensor<double> a = normal<double>({M * K}, gen), b = normal<double>({K * N}, gen), c0 = normal<double>({M * N}, gen);
    const Tensor<T> at = converted<T>(a), bt = converted<T>(b);
    Tensor<T> c = converted<T>(c0);
    detail::gemm_row_major(at.data(), trans_a, bt.data(), trans_b, c.data(), M, N, K, accumulate);
    Tensor<double> exact = Tensor<double>::zeros(Shape{M, N}), abs_terms = Tensor<double>::zeros(Shape{M, N});
    for (Index i = 0; i < M; ++i)
        for (Index j = 0; j < N; ++j) {
            double s = accumulate ? static_cast<double>(static_cast<T>(c0.data()[i * N + j])) : 0.0, sa = std::abs(s);
            for (Index p = 0; p < K; ++p) {
                const double t = static_cast<double>(at.data()[trans_a ? p * M + i : i * K + p]) *
                                 static_cast<double>(bt.data()[trans_b ? j * K + p : p * N + j]);
                s += t, sa += std::abs(t);
            }
            exact.data()[i * N + j] = s, abs_terms.data()[i * N + j] = sa;
        }
    CHECK(within_dot_bound(c.reshape(Shape{M, N}), exact, abs_terms, K + 1));
}
}  // namespace

TEST_CASE("gemm_row_major: every transpose, accumulation and edge tile, within rounding of the exact sums") {
    // Around the kernel's tiles (48 or 24 rows of C's long side per vector tile, 8 columns,
    // 256 of depth per chunk): sizes below, at and above each. M is the kernel's columns: a
    // last column panel of 1-2, 3-4 and 5-8 columns gets a tile of 2, 4 and 8 (AVX-512).
    Generator gen(21);
    for (const Index M : {1, 2, 3, 4, 7, 8, 9, 12, 33})
        for (const Index N : {1, 23, 24, 25, 48, 49, 97})
            for (const Index K : {1, 3, 255, 256, 257, 600})
                for (int t = 0; t < 8; ++t) {
                    check_gemm_row_major<float>(M, N, K, t & 1, t & 2, t & 4, gen);
                    check_gemm_row_major<double>(M, N, K, t & 1, t & 2, t & 4, gen);
                }
}

TEST_CASE("ConstantWeights: linear on stored packed weights, forward and backward, within rounding of the exact sums") {
    // Rows, depths and widths around the kernel's tiles (ops/gemm_panels.hpp): 48 (float) or
    // 24 (double) weight rows per row panel with AVX-512, 256 of depth per chunk, 8 input rows
    // per column panel: full, partial and single tiles in every direction.
    for (const auto& [n, in, out] : std::vector<std::array<Index, 3>>{
             {1, 1, 1}, {5, 3, 7}, {33, 300, 97}, {32, 513, 50}, {7, 256, 1}, {64, 64, 256}, {2, 1000, 3}, {9, 40, 23},
             {9, 40, 24}}) {
        check_packed_linear<float>(n, in, out);
        check_packed_linear<double>(n, in, out);
    }
}

TEST_CASE("ConstantWeights: gradients to second order, what is cached, scope lifetime, parallel chains") {
    Generator gen(5);
    const Tensor<double> wt = normal<double>({40, 300}, gen), bt = normal<double>({40}, gen);
    const V w(wt), b(bt);
    SUBCASE("x-gradients inside a scope match finite differences, first and second order") {
        ConstantWeights scope;
        check_op({"linear on packed weights", {{6, 300}}, -1, 1, [&](const Vs& v) { return linear(v[0], w, b); },
                  [&](const Ts& in) {
                      Tensor<double> y = matmul_ref(in[0], wt.transpose().contiguous());
                      for (Index i = 0; i < 6; ++i)
                          for (Index o = 0; o < 40; ++o) y.data()[i * 40 + o] += bt.data()[o];
                      return y;
                  }});
        CHECK(scope.packs() >= 1);
    }
    SUBCASE("weights computed in the graph are not cached; nested scopes share one cache") {
        ConstantWeights outer;
        const V x(normal<double>({4, 300}, gen));
        const V trained(wt, true);
        (void)linear(x, V(trained * 2.0));  // recorded in the graph: not a leaf
        CHECK(outer.packs() == 0);
        {
            ConstantWeights inner;
            (void)linear(x, w);
            CHECK(inner.packs() == 1);
        }
        CHECK(outer.packs() == 1);
        (void)linear(x, w);
        CHECK(outer.packs() == 1);
    }
    SUBCASE("a weight changed after the scope closes is read afresh") {
        Tensor<double> wm = wt.clone();
        const V wv(wm);
        const V x(normal<double>({3, 300}, gen));
        {
            ConstantWeights scope;
            (void)linear(x, wv);
        }
        wm.data()[0] += 1.0;  // y[:, 0] moves by x[:, 0]
        const Tensor<double> before = linear(x, V(wt)).value(), after = linear(x, wv).value();
        for (Index i = 0; i < 3; ++i) CHECK(after.at({i, 0}) - before.at({i, 0}) == doctest::Approx(x.value().at({i, 0})).epsilon(1e-9));
    }
    SUBCASE("the scope reaches the tasks of parallel chains; results equal one graph's") {
        const int saved = num_threads();
        set_num_threads(2);
        const sample::EnergyFn<double> energy = [&](const V& x) { return V(sum(V(tanh(linear(x, w, b))), 1)); };
        const Tensor<double> x = normal<double>({32, 300}, gen);
        const auto plain = sample::energy_and_grad(energy, x, "test", false);
        ConstantWeights scope;
        const auto packed = sample::energy_and_grad(energy, x, "test", true);
        CHECK(scope.packs() == 2);
        for (Index i = 0; i < x.numel(); ++i) CHECK(packed.grad.data()[i] == doctest::Approx(plain.grad.data()[i]).epsilon(1e-12));
        for (Index i = 0; i < 32; ++i) CHECK(packed.energy.data()[i] == doctest::Approx(plain.energy.data()[i]).epsilon(1e-12));
        set_num_threads(saved);
    }
}
