// Smoke test for ember as seen by a downstream project: d/dx sum(x*x) = 2x.
// Built by tests/consumer (installed package) and tests/consumer/subdir
// (add_subdirectory). Returns non-zero on failure.
#include <ember/ember.hpp>

#include <cmath>
#include <cstdio>

namespace {

bool close(double got, double want) { return std::fabs(got - want) <= 1e-12; }

}  // namespace

int main() {
  ember::Var<double> x(ember::Tensor<double>::full({3}, 2.0), /*requires_grad=*/true);
  ember::Var<double> y = ember::sum(x * x);  // 3 * 2^2 = 12
  y.backward();

  int failures = 0;
  if (const double v = y.value().item(); !close(v, 12.0)) {
    std::fprintf(stderr, "ember_consumer: sum(x*x) = %g, expected 12\n", v);
    ++failures;
  }
  for (int i = 0; i < 3; ++i) {
    if (const double g = x.grad().data()[i]; !close(g, 4.0)) {
      std::fprintf(stderr, "ember_consumer: grad[%d] = %g, expected 4\n", i, g);
      ++failures;
    }
  }
  if (failures != 0) return 1;
  std::printf("ember_consumer: OK (y = 12, dy/dx = [4, 4, 4])\n");
  return 0;
}
