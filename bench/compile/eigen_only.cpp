// The yardstick for bench/compile-times: a program of comparable work written with Eigen
// alone (a matrix product, an elementwise exp and a transposed product).
#include <Eigen/Core>
#include <cstdio>

int main() {
    const Eigen::MatrixXf x = Eigen::MatrixXf::Random(64, 784), w = Eigen::MatrixXf::Random(784, 256);
    const Eigen::MatrixXf h = (x * w).array().exp().matrix();
    const Eigen::MatrixXf g = x.transpose() * h;
    std::printf("%f\n", static_cast<double>(g.sum()));
    return 0;
}
