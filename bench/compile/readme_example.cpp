// The README's first example as a program: what `bench/compile-times` compiles to measure
// how long a researcher's file that includes ember takes to build.
#include <ember/ember.hpp>
using namespace ember;

int main() {
    Generator gen(0);
    Var<float> W(normal<float>({784, 256}, gen, 0.f, 0.05f), true);
    Var<float> x(normal<float>({64, 784}, gen));
    Var<float> energy = mean(softplus(matmul(x, W)));   // one fused node
    energy.backward();                                  // W.grad() now holds dE/dW

    // Gradient penalties need the gradient of a gradient:
    Var<float> xr(normal<float>({64, 784}, gen), true);
    Var<float> gx = grad(sum(softplus(matmul(xr, W))), {xr}, {.create_graph = true})[0];
    Var<float> penalty = mean(square(norm2(gx, 1) - 1.0f));
    penalty.backward();                                 // differentiates through gx
    return penalty.item() >= 0 ? 0 : 1;
}
