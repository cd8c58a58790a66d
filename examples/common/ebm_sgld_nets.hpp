#pragma once
// The energy network of examples/ebm_sgld_mnist.cpp (IGEBM, Du & Mordatch 2019; JEM,
// Grathwohl et al. 2020; docs/math.md §1, §7.4) and what its replay buffer needs:
//
//   E: x -> Conv 4x4/2 16 -> SiLU -> Conv 4x4/2 32 -> SiLU -> Linear 64 -> SiLU -> Linear 1
//
// SiLU, smooth, so that ∇_x E is well behaved along the chains; small, because every training
// step evaluates E and its input gradient K + 1 times. Pixels in [-1, 1]; PyTorch's default
// initialisation.
#include <numeric>
#include <vector>

#include <ember/ember.hpp>

namespace ember_examples {

struct EnergyNet : ember::nn::Sequential<float> {
    explicit EnergyNet(ember::Generator& init) {
        namespace nn = ember::nn;
        add<nn::Conv2d>(1, 16, 4, init, nn::Conv2dOptions{.stride = 2, .padding = 1});
        add<nn::SiLU>();
        add<nn::Conv2d>(16, 32, 4, init, nn::Conv2dOptions{.stride = 2, .padding = 1});
        add<nn::SiLU>();
        add<nn::Flatten>();
        add<nn::Linear>(32 * 7 * 7, 64, init);
        add<nn::SiLU>();
        add<nn::Linear>(64, 1, init);
    }
};

// Uniform noise in [-1, 1], [n,1,28,28]: where every chain starts.
inline ember::Tensor<float> uniform_images(ember::Index n, ember::Generator& gen) {
    return ember::Tensor<float>(ember::uniform<float>(ember::Shape{n, 1, 28, 28}, gen) * 2.0f - 1.0f);
}

// The replay buffer's states as a module buffer, so that a Checkpoint saves and restores them
// with everything else: save_from() before a save, restore_to() after a load.
class BufferState : public ember::nn::Module<float> {
public:
    explicit BufferState(const ember::sample::ReplayBuffer<float>& buffer) {
        states = register_buffer("states", ember::Tensor<float>::zeros(buffer.states().shape()));
    }
    ember::Var<float> forward(const ember::Var<float>&) override { throw ember::Error("BufferState holds data only"); }
    std::string describe() const override { return "BufferState"; }

    void save_from(const ember::sample::ReplayBuffer<float>& buffer) { states.copy_from(buffer.states()); }
    void restore_to(ember::sample::ReplayBuffer<float>& buffer) const {
        std::vector<ember::Index> all(static_cast<std::size_t>(states.dim(0)));
        std::iota(all.begin(), all.end(), ember::Index{0});
        buffer.push(all, states);
    }

    ember::Tensor<float> states;
};

}  // namespace ember_examples
