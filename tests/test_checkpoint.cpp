// Checkpoints (include/ember/train/checkpoint.hpp): a run resumed from a checkpoint
// continues bit-identically, and a checkpoint that does not fit is refused without
// changing anything.
#include <doctest/doctest.h>

#include <cstring>
#include <ember/ember.hpp>
#include <filesystem>
#include <memory>

using namespace ember;
namespace fs = std::filesystem;

namespace {

// A small training run with everything a real one has: a module with a buffer
// (BatchNorm), Adam state, a data order from a BatchIterator, noise from a Generator.
struct Run {
    Generator init, noise;
    nn::Sequential<float> net;
    std::unique_ptr<Adam<float>> opt;
    BatchIterator<float> batches;
    std::int64_t step = 0;
    Checkpoint<float> ckpt;

    explicit Run(const Tensor<float>& data)
        : init(1), noise(2), batches(data, {.batch_size = 8, .shuffle = true, .drop_last = true, .seed = 3}) {
        net.add<nn::Linear>(4, 16, init);
        net.add<nn::BatchNorm1d>(16);
        net.add<nn::LeakyReLU>(0.2);
        net.add<nn::Linear>(16, 1, init);
        opt = std::make_unique<Adam<float>>(net.parameters(), AdamOptions{.lr = 0.01, .betas = {0.5, 0.999}});
        ckpt.add("net", net).add("opt", *opt, net).add("noise", noise).add("step", step);
    }

    // Steps until `until`, continuing the data order from wherever `step` is.
    void train(std::int64_t until) {
        const Index per_epoch = batches.batches_per_epoch();
        batches.start_epoch(static_cast<std::uint64_t>(step / per_epoch), step % per_epoch);
        while (step < until) {
            auto b = batches.next();
            if (!b) {
                batches.start_epoch(batches.epoch() + 1);
                b = batches.next();
            }
            const Tensor<float> eps = normal<float>(Shape{8, 4}, noise, 0.0f, 0.1f);
            const Var<float> x(Tensor<float>(b->x + eps));
            const Var<float> loss = mean(Var<float>(square(net(x) - 1.0f)));
            opt->zero_grad();
            backward(loss);
            opt->step();
            ++step;
        }
    }
};

bool bitwise_equal(const nn::Module<float>& a, const nn::Module<float>& b) {
    const auto sa = a.state_dict(), sb = b.state_dict();
    if (sa.size() != sb.size()) return false;
    for (std::size_t i = 0; i < sa.size(); ++i) {
        const Tensor<float> x = sa[i].second.contiguous(), y = sb[i].second.contiguous();
        if (sa[i].first != sb[i].first || x.shape() != y.shape() ||
            std::memcmp(x.data(), y.data(), sizeof(float) * static_cast<std::size_t>(x.numel())) != 0)
            return false;
    }
    return true;
}

fs::path temp_file(const char* name) { return fs::temp_directory_path() / (std::string("ember_test_") + name); }

}  // namespace

TEST_CASE("a run resumed from a checkpoint continues bit-identically") {
    Generator g(7);
    const Tensor<float> data = normal<float>(Shape{44, 4}, g);  // 5 batches of 8 per epoch, 4 dropped
    const fs::path path = temp_file("resume.safetensors");

    Run straight(data);
    straight.train(13);  // crosses two epoch boundaries

    Run first(data);
    first.train(7);  // mid-epoch
    first.ckpt.save(path);
    Run resumed(data);  // fresh objects, different from `first` until loaded
    resumed.ckpt.load(path);
    CHECK(resumed.step == 7);
    CHECK(resumed.noise.offset() == first.noise.offset());
    resumed.train(13);

    CHECK(bitwise_equal(straight.net, resumed.net));
    // The optimiser's moments too.
    for (std::size_t i = 0; i < straight.opt->state().size(); ++i) {
        const auto& a = straight.opt->state()[i];
        const auto& b = resumed.opt->state()[i];
        CHECK(a.step == b.step);
        REQUIRE(a.buffers.size() == b.buffers.size());
        for (std::size_t k = 0; k < a.buffers.size(); ++k)
            CHECK(std::memcmp(a.buffers[k].second.data(), b.buffers[k].second.data(),
                              sizeof(float) * static_cast<std::size_t>(a.buffers[k].second.numel())) == 0);
    }
    // And an uninterrupted run is not trivially equal to a shorter one.
    Run shorter(data);
    shorter.train(12);
    CHECK(!bitwise_equal(straight.net, shorter.net));
    fs::remove(path);
}

TEST_CASE("a checkpoint that does not fit is refused and changes nothing") {
    Generator g(7);
    const Tensor<float> data = normal<float>(Shape{44, 4}, g);
    const fs::path path = temp_file("mismatch.safetensors");
    Run a(data);
    a.train(3);
    a.ckpt.save(path, {{"note", "written by the test"}});
    const Safetensors<float> file = load_safetensors<float>(path);
    CHECK(file.metadata.at("step") == "3");
    CHECK(file.metadata.at("opt.0.weight.step") == "3");
    CHECK(file.metadata.at("note") == "written by the test");
    CHECK(file.tensors.count("opt.0.weight.exp_avg_sq") == 1);
    CHECK(file.tensors.count("net.1.running_mean") == 1);

    SUBCASE("another architecture") {
        Generator init(1);
        nn::Sequential<float> other;
        other.add<nn::Linear>(4, 8, init);  // 8 hidden units instead of 16
        std::int64_t step = 0;
        const Tensor<float> before = other.state_dict()[0].second.clone();
        Checkpoint<float> c;
        c.add("net", other).add("step", step);
        CHECK_THROWS_WITH_AS(c.load(path), doctest::Contains("'net.0.weight' has shape [16,4]"), Error);
        CHECK(step == 0);
        CHECK(std::memcmp(before.data(), other.state_dict()[0].second.data(), sizeof(float) * 32) == 0);
    }
    SUBCASE("a missing entry") {
        Run b(data);
        double extra = 1.5;
        b.ckpt.add("temperature", extra);
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains("no metadata 'temperature'"), Error);
        CHECK(b.step == 0);
    }
    SUBCASE("registration errors") {
        Run b(data);
        std::int64_t twice = 0;
        CHECK_THROWS_WITH_AS(b.ckpt.add("step", twice), doctest::Contains("added twice"), Error);
        nn::Sequential<float> unrelated;
        Generator init(1);
        unrelated.add<nn::Linear>(1, 1, init);
        CHECK_THROWS_WITH_AS(b.ckpt.add("opt2", *b.opt, unrelated), doctest::Contains("does not belong"), Error);
    }
    CHECK_THROWS_AS(a.ckpt.load(temp_file("does_not_exist.safetensors")), Error);
    fs::remove(path);
}

TEST_CASE("doubles and generators come back exactly") {
    const fs::path path = temp_file("scalars.safetensors");
    double lr = 0.1 + 0.2, tiny = 5e-324;
    Generator gen(123);
    (void)uniform<float>(Shape{10}, gen);
    Checkpoint<float> c;
    c.add("lr", lr).add("tiny", tiny).add("gen", gen);
    c.save(path);
    const double lr0 = lr;
    const std::uint64_t offset = gen.offset();
    lr = tiny = 0;
    gen = Generator(9);
    c.load(path);
    CHECK(lr == lr0);
    CHECK(tiny == 5e-324);
    CHECK(gen.seed() == 123);
    CHECK(gen.offset() == offset);
    fs::remove(path);
}
