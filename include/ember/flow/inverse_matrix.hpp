#pragma once
/// \file
/// inverse_matrix(W): W⁻¹ of a small square matrix, differentiable (to any order).
/// The value comes from Eigen's partially pivoted LU, in double. From W W⁻¹ = I,
///
///     d(W⁻¹) = -W⁻¹ dW W⁻¹,   so   ∂L/∂W = -W⁻ᵀ (∂L/∂W⁻¹) W⁻ᵀ,
/// written with matmul and inverse_matrix itself, recomputed as a Var when the backward is
/// being recorded, so gradients of gradients are exact. The invertible linear steps use it
/// for their inverse pass, which is then differentiable in their parameters too.
#include <Eigen/LU>
#include <limits>

#include "ember/core/instances.hpp"
#include "ember/ops/linalg.hpp"

namespace ember::flow {

/// W⁻¹ of a square matrix [C,C], differentiable to any order; throws Error when W is
/// singular to working precision.
template <Real T>
Var<T> inverse_matrix(const Var<T>& w) {
    const Shape& s = w.shape();
    EMBER_CHECK(s.rank() == 2 && s[0] == s[1] && s[0] > 0, "inverse_matrix", "expected a square matrix [C,C], got ",
                s.str());
    const Index n = s[0];
    const Tensor<T> wc = w.value().contiguous();
    Eigen::MatrixXd m(n, n);
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j) m(i, j) = static_cast<double>(wc.data()[i * n + j]);
    const Eigen::PartialPivLU<Eigen::MatrixXd> lu(m);
    // rcond() estimates 1/cond₁(W); below machine epsilon the inverse has no correct digits.
    const double rcond = lu.rcond();
    EMBER_CHECK(rcond > std::numeric_limits<double>::epsilon(), "inverse_matrix", "matrix ", s.str(),
                " is singular to working precision (estimated reciprocal condition number ", rcond, ")");
    const Eigen::MatrixXd inv = lu.inverse();
    Tensor<T> out = Tensor<T>::empty(s);
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j) out.data()[i * n + j] = static_cast<T>(inv(i, j));
    return record("inverse_matrix", out, {w}, [w, out](const Var<T>& g, std::span<const bool>) {
        const Var<T> wi_t = transpose(grad_enabled() ? inverse_matrix(w) : Var<T>(out));
        return std::vector<Var<T>>{Var<T>(-matmul(wi_t, matmul(g, wi_t)))};
    });
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_INVERSE_MATRIX_INSTANCES(X, T) \
    X template Var<T> inverse_matrix<T>(const Var<T>&);
EMBER_EXTERN_INSTANCES(EMBER_INVERSE_MATRIX_INSTANCES)

}  // namespace ember::flow
