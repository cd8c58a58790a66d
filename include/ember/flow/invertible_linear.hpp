#pragma once
/// \file
/// Invertible linear maps with the LU parameterisation (Glow, Kingma & Dhariwal 2018):
///
///     W = P · L · (U + diag(sign ⊙ exp(log_abs_diag)))                         [C, C]
/// P a fixed permutation (buffer "permutation"), L unit lower-triangular (parameter
/// "lower", strictly lower part used), U strictly upper-triangular ("upper", strictly upper
/// part used), the diagonal of the upper factor as fixed signs ("sign_diag", a buffer) times
/// exp(log_abs_diag) ("log_abs_diag", [C]). Then det W = ±Π exp(log_abs_diag), so
///
///     log|det W| = Σ log_abs_diag,
/// which costs O(C) instead of the O(C³) of a determinant, and W stays invertible for any
/// parameter values (its diagonal factor can never reach 0).
///
///     InvertibleLinear(D):    x [N, D],       y = x Wᵀ (y_i = W x_i),   log|det| = Σ log_abs_diag
///     InvertibleConv1x1(C):   x [N, C, H, W], y[:, :, h, w] = W x[:, :, h, w] at each pixel,
///                             log|det| = H·W · Σ log_abs_diag (one C×C block per pixel)
/// Both start from a random rotation (Q of the QR factorisation of a Gaussian matrix, with
/// the signs of R's diagonal folded in so that Q is uniformly distributed), decomposed as
/// Q = P L U by Eigen's partially pivoted LU: |det Q| = 1, so a new step has log-determinant
/// 0 and mixes all channels. The inverse pass uses W⁻¹ (inverse_matrix), differentiable.
#include <Eigen/LU>
#include <Eigen/QR>
#include <cmath>

#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/flow/inverse_matrix.hpp"
#include "ember/flow/step.hpp"
#include "ember/ops/conv.hpp"

namespace ember::flow {

namespace detail {

// The LU-parameterised weight shared by InvertibleLinear and InvertibleConv1x1.
template <Real T>
class LUWeight : public FlowStep<T> {
public:
    Index size() const { return n_; }

    // W = P L (U + diag(sign ⊙ exp(log_abs_diag))), recorded (differentiable).
    Var<T> weight() const {
        const Var<T> L(lower_ * strict_lower_ + eye_);
        const Var<T> diag(sign_diag_ * exp(log_abs_diag_));
        const Var<T> U(upper_ * strict_upper_ + eye_ * reshape(diag, Shape{1, n_}));
        return matmul(Var<T>(permutation_), matmul(L, U));
    }
    // log|det W| = Σ log_abs_diag (rank 0).
    Var<T> log_abs_det() const { return sum(log_abs_diag_); }

protected:
    LUWeight(const char* op, Index n, Generator& gen) : n_(n) {
        EMBER_CHECK(n >= 1, op, "size must be positive, got ", n);
        // A uniformly random rotation: Q R = A, then Q · sign(diag R) (Mezzadri 2007).
        const Tensor<double> a = normal<double>(Shape{n, n}, gen);
        Eigen::MatrixXd A(n, n);
        for (Index i = 0; i < n; ++i)
            for (Index j = 0; j < n; ++j) A(i, j) = a.data()[i * n + j];
        const Eigen::HouseholderQR<Eigen::MatrixXd> qr(A);
        Eigen::MatrixXd Q = qr.householderQ();
        const Eigen::MatrixXd R = qr.matrixQR().template triangularView<Eigen::Upper>();
        for (Index j = 0; j < n; ++j)
            if (R(j, j) < 0) Q.col(j) *= -1.0;
        // P_eigen Q = L U, so Q = P_eigenᵀ L U.
        const Eigen::PartialPivLU<Eigen::MatrixXd> lu(Q);
        const Eigen::MatrixXd P = lu.permutationP();
        const Eigen::MatrixXd& LU = lu.matrixLU();

        Tensor<T> perm = Tensor<T>::empty(Shape{n, n}), lower = Tensor<T>::zeros(Shape{n, n}),
                  upper = Tensor<T>::zeros(Shape{n, n}), sign = Tensor<T>::empty(Shape{n}),
                  log_abs = Tensor<T>::empty(Shape{n});
        eye_ = Tensor<T>::zeros(Shape{n, n});
        strict_lower_ = Tensor<T>::zeros(Shape{n, n});
        strict_upper_ = Tensor<T>::zeros(Shape{n, n});
        for (Index i = 0; i < n; ++i) {
            for (Index j = 0; j < n; ++j) {
                perm.data()[i * n + j] = static_cast<T>(P(j, i));
                if (j < i) {
                    lower.data()[i * n + j] = static_cast<T>(LU(i, j));
                    strict_lower_.data()[i * n + j] = T(1);
                } else if (j > i) {
                    upper.data()[i * n + j] = static_cast<T>(LU(i, j));
                    strict_upper_.data()[i * n + j] = T(1);
                }
            }
            eye_.data()[i * n + i] = T(1);
            sign.data()[i] = LU(i, i) < 0 ? T(-1) : T(1);
            log_abs.data()[i] = static_cast<T>(std::log(std::abs(LU(i, i))));
        }
        permutation_ = this->register_buffer("permutation", perm);
        sign_diag_ = this->register_buffer("sign_diag", sign);
        lower_ = this->register_parameter("lower", lower);
        upper_ = this->register_parameter("upper", upper);
        log_abs_diag_ = this->register_parameter("log_abs_diag", log_abs);
    }

    Index n_;

private:
    Tensor<T> permutation_, sign_diag_;            // buffers: fixed
    Var<T> lower_, upper_, log_abs_diag_;          // parameters
    Tensor<T> eye_, strict_lower_, strict_upper_;  // constant masks
};

}  // namespace detail

/// y = x Wᵀ for x [N, D], with W in the LU parameterisation (see the file description).
template <Real T>
class InvertibleLinear : public detail::LUWeight<T> {
public:
    /// A step over `features` features, starting from a random rotation drawn from `gen`.
    InvertibleLinear(Index features, Generator& gen) : detail::LUWeight<T>("InvertibleLinear", features, gen) {}

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        check_input("InvertibleLinear", x.shape());
        return {linear(x, this->weight()), detail::same_for_each_sample(this->log_abs_det(), x.dim(0))};
    }
    Var<T> inverse(const Var<T>& y) override {
        check_input("InvertibleLinear::inverse", y.shape());
        return linear(y, inverse_matrix(this->weight()));
    }
    std::string describe() const override { return nn::detail::call_string("InvertibleLinear", this->n_); }

private:
    void check_input(const char* op, const Shape& s) const {
        EMBER_CHECK(s.rank() == 2 && s[1] == this->n_, op, "expected input [N,", this->n_, "], got ", s.str());
    }
};

/// Glow's invertible 1×1 convolution: the same C×C matrix W applied at every pixel of x
/// [N, C, H, W].
template <Real T>
class InvertibleConv1x1 : public detail::LUWeight<T> {
public:
    /// A step over `channels` channels, starting from a random rotation drawn from `gen`.
    InvertibleConv1x1(Index channels, Generator& gen) : detail::LUWeight<T>("InvertibleConv1x1", channels, gen) {}

    FlowOutput<T> forward_and_logdet(const Var<T>& x) override {
        check_input("InvertibleConv1x1", x.shape());
        const Var<T> total(this->log_abs_det() * static_cast<T>(x.dim(2) * x.dim(3)));
        return {conv2d(x, as_kernel(this->weight())), detail::same_for_each_sample(total, x.dim(0))};
    }
    Var<T> inverse(const Var<T>& y) override {
        check_input("InvertibleConv1x1::inverse", y.shape());
        return conv2d(y, as_kernel(inverse_matrix(this->weight())));
    }
    std::string describe() const override { return nn::detail::call_string("InvertibleConv1x1", this->n_); }

private:
    void check_input(const char* op, const Shape& s) const {
        EMBER_CHECK(s.rank() == 4 && s[1] == this->n_, op, "expected input [N,", this->n_, ",H,W], got ", s.str());
    }
    Var<T> as_kernel(const Var<T>& w) const { return reshape(w, Shape{this->n_, this->n_, 1, 1}); }
};

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_INVERTIBLE_LINEAR_INSTANCES(X, T) \
    X template class detail::LUWeight<T>; \
    X template class InvertibleLinear<T>; \
    X template class InvertibleConv1x1<T>;
EMBER_EXTERN_INSTANCES(EMBER_INVERTIBLE_LINEAR_INSTANCES)

}  // namespace ember::flow
