// Smoke test for ember::dist as seen by a downstream project (built by tests/consumer and
// tests/consumer/subdir when the ember::dist target exists; scripts/test runs it under
// mpirun -np 2): every rank contributes rank + 1 to a gradient, the average must be
// (size + 1) / 2 on every rank. Returns non-zero on failure.
#include <ember/dist/dist.hpp>
#include <ember/ember.hpp>

#include <cmath>
#include <cstdio>

int main(int argc, char** argv) {
    return ember::dist::run(argc, argv, [](ember::dist::Communicator& comm) {
        ember::Var<double> p(ember::Tensor<double>::zeros({3}), /*requires_grad=*/true);
        p.set_grad(ember::Tensor<double>::full({3}, comm.rank() + 1.0));
        ember::dist::allreduce_gradients(comm, std::vector<ember::Var<double>>{p});
        const double want = (comm.size() + 1) / 2.0;
        int bad = 0;
        for (int i = 0; i < 3; ++i) bad += std::fabs(p.grad().data()[i] - want) > 1e-12;
        const double total = ember::dist::allreduce(comm, bad);
        if (comm.is_root())
            std::printf("ember_consumer_dist: %s (%d processes, mean gradient %g)\n", total == 0 ? "OK" : "FAILED",
                        comm.size(), want);
        return total == 0 ? 0 : 1;
    });
}
