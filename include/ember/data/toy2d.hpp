#pragma once
/// \file
/// Built-in 2-D distributions, with the definitions used in the GAN/EBM literature. Each
/// returns n samples as a [n, 2] tensor drawn from `gen` (reproducible from its seed).
#include <array>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "ember/core/random.hpp"

namespace ember {

/// The built-in distributions: grid25 (25 Gaussians on a grid), ring8 (8 Gaussians on a
/// circle), swiss_roll, two_moons (scikit-learn's make_moons), rings (three concentric
/// circles) and checkerboard (FFJORD's).
enum class Toy2d { grid25, ring8, swiss_roll, two_moons, rings, checkerboard };

/// The mixture components of the two Gaussian mixtures, for mode-coverage metrics.
struct ToyModes {
    /// Centre of each component.
    std::vector<std::array<double, 2>> centres;
    /// Standard deviation of every component.
    double std;
};

/// 25 Gaussians: centres on the grid {-4,-2,0,2,4}², equal weights, std 0.05.
inline ToyModes grid25_modes() {
    ToyModes m{{}, 0.05};
    for (int i = -2; i <= 2; ++i)
        for (int j = -2; j <= 2; ++j) m.centres.push_back({2.0 * i, 2.0 * j});
    return m;
}
/// 8 Gaussians: centres at radius 2, angles k·π/4, equal weights, std 0.02.
inline ToyModes ring8_modes() {
    ToyModes m{{}, 0.02};
    for (int k = 0; k < 8; ++k) m.centres.push_back({2 * std::cos(k * std::numbers::pi / 4), 2 * std::sin(k * std::numbers::pi / 4)});
    return m;
}

/// The distribution called `name` (the enumerator's name; also "25gaussians", "8gaussians").
inline Toy2d parse_toy2d(const std::string& name) {
    if (name == "grid25" || name == "25gaussians") return Toy2d::grid25;
    if (name == "ring8" || name == "8gaussians") return Toy2d::ring8;
    if (name == "swiss_roll") return Toy2d::swiss_roll;
    if (name == "two_moons") return Toy2d::two_moons;
    if (name == "rings") return Toy2d::rings;
    if (name == "checkerboard") return Toy2d::checkerboard;
    detail::fail("parse_toy2d", "unknown distribution '", name,
                 "'; expected grid25, ring8, swiss_roll, two_moons, rings or checkerboard");
}

/// `n` samples [n, 2] of distribution `kind`, drawn from `gen`.
template <Real T>
Tensor<T> sample_toy2d(Toy2d kind, Index n, Generator& gen) {
    EMBER_CHECK(n >= 0, "sample_toy2d", "negative sample count ", n);
    // Two uniforms and two standard normals per sample, drawn up front.
    const Tensor<double> u = uniform<double>({n, 2}, gen), z = normal<double>({n, 2}, gen);
    Tensor<T> out = Tensor<T>::empty({n, 2});
    constexpr double pi = std::numbers::pi;
    for (Index i = 0; i < n; ++i) {
        const double u0 = u.data()[2 * i], u1 = u.data()[2 * i + 1];
        const double z0 = z.data()[2 * i], z1 = z.data()[2 * i + 1];
        double x = 0, y = 0;
        switch (kind) {
            case Toy2d::grid25: {  // pick one of 25 centres uniformly
                const int k = std::min(24, static_cast<int>(u0 * 25));
                x = 2.0 * (k / 5 - 2) + 0.05 * z0;
                y = 2.0 * (k % 5 - 2) + 0.05 * z1;
                break;
            }
            case Toy2d::ring8: {
                const int k = std::min(7, static_cast<int>(u0 * 8));
                x = 2 * std::cos(k * pi / 4) + 0.02 * z0;
                y = 2 * std::sin(k * pi / 4) + 0.02 * z1;
                break;
            }
            case Toy2d::swiss_roll: {  // t ~ 1.5π(1 + 2u); (t cos t, t sin t)/5, noise std 0.05
                const double t = 1.5 * pi * (1 + 2 * u0);
                x = t * std::cos(t) / 5 + 0.05 * z0;
                y = t * std::sin(t) / 5 + 0.05 * z1;
                break;
            }
            case Toy2d::two_moons: {  // scikit-learn's make_moons, noise std 0.05
                const double th = pi * u1;
                if (u0 < 0.5) x = std::cos(th), y = std::sin(th);
                else x = 1 - std::cos(th), y = 0.5 - std::sin(th);
                x += 0.05 * z0;
                y += 0.05 * z1;
                break;
            }
            case Toy2d::rings: {  // radii 1, 2, 3 with equal weights, radial noise std 0.05
                const int r = 1 + std::min(2, static_cast<int>(u0 * 3));
                const double a = 2 * pi * u1, rad = r + 0.05 * z0;
                x = rad * std::cos(a);
                y = rad * std::sin(a);
                break;
            }
            case Toy2d::checkerboard: {  // FFJORD's: alternate unit squares of [-4,4]², scaled by 2
                const double x1 = 4 * u0 - 2;
                const double x2 = u1 - (z0 > 0 ? 2.0 : 0.0) + std::fmod(std::floor(x1) + 4, 2.0);
                x = 2 * x1;
                y = 2 * x2;
                break;
            }
        }
        out.data()[2 * i] = static_cast<T>(x);
        out.data()[2 * i + 1] = static_cast<T>(y);
    }
    return out;
}

}  // namespace ember
