// Smoke test for ember as seen by a downstream project: d/dx sum(x*x) = 2x, and one step
// of a layer, a convolution and an optimiser (code that ember::compiled provides when the
// program links it). Built by tests/consumer (installed package) and tests/consumer/subdir
// (add_subdirectory), header-only and against ember::compiled. Returns non-zero on failure.
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

  // A linear layer, a convolution and one Adam step: the loss must go down.
  ember::Generator gen(1);
  ember::nn::Linear<float> layer(4, 2, gen);
  ember::Adam<float> adam(layer.parameters(), {.lr = 0.05});
  const ember::Var<float> input(ember::normal<float>({8, 4}, gen));
  auto loss = [&] { return ember::mean(ember::Var<float>(ember::square(layer.forward(input)))); };
  const float before = loss().item();
  adam.zero_grad();
  loss().backward();
  adam.step();
  if (const float after = loss().item(); !(after < before)) {
    std::fprintf(stderr, "ember_consumer: an Adam step did not lower the loss (%g -> %g)\n", before, after);
    ++failures;
  }
  const ember::Var<float> image(ember::normal<float>({2, 1, 8, 8}, gen));
  const ember::Var<float> kernel(ember::normal<float>({3, 1, 3, 3}, gen));
  if (const auto shape = ember::conv2d(image, kernel, {}, {.stride = 2, .padding = 1}).shape();
      !(shape == ember::Shape{2, 3, 4, 4})) {
    std::fprintf(stderr, "ember_consumer: conv2d gave shape %s, expected [2,3,4,4]\n", shape.str().c_str());
    ++failures;
  }
  if (failures != 0) return 1;
  std::printf("ember_consumer: OK (y = 12, dy/dx = [4, 4, 4]; a layer, a convolution and an Adam step)\n");
  return 0;
}
