// Checkpoints (include/ember/train/checkpoint.hpp): a run resumed from a checkpoint
// continues bit-identically; a checkpoint that does not fit, is damaged or holds
// non-finite values is refused without changing anything; a diverged state is never saved.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <ember/ember.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

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

// The data every run of a test trains on (5 batches of 8 per epoch, 4 rows dropped), and
// the test's checkpoint file, removed at the end.
struct Fixture {
    Tensor<float> data;
    fs::path path;
    explicit Fixture(const char* file) : path(temp_file(file)) {
        Generator g(7);
        data = normal<float>(Shape{44, 4}, g);
    }
    ~Fixture() { fs::remove(path); }
};

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void write_bytes(const fs::path& p, const std::string& bytes) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
}

// Everything a Run would restore, to prove that a refused load changed nothing.
struct Snapshot {
    std::vector<std::vector<float>> values;  // module state, then optimiser state
    std::vector<std::int64_t> steps;
    double lr;
    std::uint64_t noise_offset;
    std::int64_t step;

    explicit Snapshot(const Run& r) : lr(r.opt->lr()), noise_offset(r.noise.offset()), step(r.step) {
        auto add = [&](const Tensor<float>& t) {
            const Tensor<float> c = t.contiguous();
            values.emplace_back(c.data(), c.data() + c.numel());
        };
        for (const auto& [name, t] : r.net.state_dict()) add(t);
        for (const auto& s : r.opt->state()) {
            steps.push_back(s.step);
            for (const auto& [key, t] : s.buffers) add(t);
        }
    }
    // Bitwise, so that NaN compares equal to NaN.
    bool operator==(const Snapshot& o) const {
        auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
            return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
        };
        if (values.size() != o.values.size()) return false;
        for (std::size_t i = 0; i < values.size(); ++i)
            if (!same(values[i], o.values[i])) return false;
        return steps == o.steps && lr == o.lr && noise_offset == o.noise_offset && step == o.step;
    }
};

// Rewrites the checkpoint at `path` through `edit` of its tensors and metadata (saved again
// with fresh checksums: the file is consistent, only its content is wrong).
template <class Edit>
void rewrite(const fs::path& path, Edit edit) {
    Safetensors<float> f = load_safetensors<float>(path);
    edit(f.tensors, f.metadata);
    save_safetensors(path, f.tensors, f.metadata);
}

}  // namespace

TEST_CASE("a run resumed from a checkpoint continues bit-identically") {
    const Fixture fixture("resume.safetensors");
    const auto& [data, path] = fixture;

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
}

TEST_CASE("a checkpoint that does not fit is refused and changes nothing") {
    const Fixture fixture("mismatch.safetensors");
    const auto& [data, path] = fixture;
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
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains("missing 'temperature'"), Error);
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

TEST_CASE("a damaged checkpoint is refused and changes nothing") {
    const Fixture fixture("damaged.safetensors");
    const auto& [data, path] = fixture;
    Run a(data);
    a.train(3);
    a.ckpt.save(path);
    const std::string good = read_bytes(path);

    Run b(data);
    b.train(1);
    const Snapshot before(b);
    auto refused = [&](const std::string& bytes, const char* expect) {
        write_bytes(path, bytes);
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains(expect), Error);
        CHECK(Snapshot(b) == before);
    };
    std::string flipped = good;
    std::uint64_t header = 0;  // the data section starts after the 8-byte length and the header
    for (int i = 7; i >= 0; --i) header = header << 8 | static_cast<unsigned char>(good[static_cast<std::size_t>(i)]);
    REQUIRE(8 + header + 100 < good.size());
    flipped[8 + header + 100] ^= 0x10;  // one bit of the data
    refused(flipped, "does not match its CRC-32");
    std::string renamed = good;
    const std::size_t at = renamed.find("\"opt.0.weight.exp_avg\":{");
    REQUIRE(at != std::string::npos);
    renamed[at + 20] = 'h';  // exp_avg -> exp_avh
    refused(renamed, "has no CRC-32");
    std::string step = good;
    const std::size_t s = step.find("\"step\":\"3\"");
    REQUIRE(s != std::string::npos);
    step[s + 8] = '9';
    refused(step, "the metadata do not match their CRC-32");
    refused(good.substr(0, good.size() - 1), "");  // truncated

    write_bytes(path, good);
    b.ckpt.load(path);
    CHECK(b.step == 3);
}

TEST_CASE("a checkpoint with wrong values is refused before anything changes") {
    const Fixture fixture("values.safetensors");
    const auto& [data, path] = fixture;
    Run a(data);
    a.train(3);
    Run b(data);
    b.train(1);
    const Snapshot before(b);

    SUBCASE("a NaN learning rate") {  // once thrown after the weights were overwritten
        a.ckpt.save(path);
        rewrite(path, [](auto&, auto& meta) { meta["opt.lr"] = "nan"; });
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains("'opt.lr' = nan is not a learning rate"), Error);
        CHECK(Snapshot(b) == before);
    }
    SUBCASE("a negative step count") {
        a.ckpt.save(path);
        rewrite(path, [](auto&, auto& meta) { meta["opt.3.bias.step"] = "-1"; });
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains("'opt.3.bias.step' = -1 is negative"), Error);
        CHECK(Snapshot(b) == before);
    }
    SUBCASE("non-finite values: refused, unless asked for") {
        a.ckpt.save(path);
        rewrite(path, [](auto& tensors, auto&) {
            tensors.at("opt.0.weight.exp_avg_sq").data()[5] = std::numeric_limits<float>::infinity();
            tensors.at("net.3.bias").data()[0] = std::numeric_limits<float>::quiet_NaN();
        });
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains("holds 1 non-finite value of 1 (element 0 is nan)"),
                             Error);
        CHECK(Snapshot(b) == before);
        b.ckpt.load(path, {.allow_non_finite = true});
        CHECK(std::isnan(b.net.parameters().back().value().data()[0]));  // net.3.bias
        CHECK(std::isinf(b.opt->state()[0].find("exp_avg_sq")->data()[5]));
    }
}

TEST_CASE("checkpoint keys match strictly, or loosely when asked, with a report") {
    const Fixture fixture("keys.safetensors");
    const auto& [data, path] = fixture;
    Run a(data);
    a.train(3);
    a.ckpt.save(path);
    Run b(data);
    const Snapshot before(b);

    SUBCASE("an unexpected tensor") {
        rewrite(path, [](auto& tensors, auto&) { tensors.emplace("net.9.weight", Tensor<float>::ones({2})); });
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains("not registered 'net.9.weight'"), Error);
        CHECK(Snapshot(b) == before);
        const CheckpointLoadReport r = b.ckpt.load(path, {.strict = false});
        CHECK(r.unexpected == std::vector<std::string>{"net.9.weight"});
        CHECK(r.missing.empty());
        CHECK(b.step == 3);
    }
    SUBCASE("an optimiser state under another name") {  // it would restart at zero unnoticed
        rewrite(path, [](auto& tensors, auto&) {
            auto node = tensors.extract("opt.0.weight.exp_avg");
            node.key() = "opt.0.weight.exp_avh";
            tensors.insert(std::move(node));
        });
        CHECK_THROWS_WITH_AS(b.ckpt.load(path),
                             doctest::Contains("missing 'opt.0.weight.exp_avg'; not registered 'opt.0.weight.exp_avh'"),
                             Error);
        CHECK(Snapshot(b) == before);
    }
    SUBCASE("a missing module tensor: kept as it was by a loose load") {
        rewrite(path, [](auto& tensors, auto&) { tensors.erase("net.1.running_var"); });
        CHECK_THROWS_WITH_AS(b.ckpt.load(path), doctest::Contains("missing 'net.1.running_var'"), Error);
        CHECK(Snapshot(b) == before);
        auto running_var = [&] {
            for (const auto& [name, t] : b.net.state_dict())
                if (name == "1.running_var") {
                    const Tensor<float> c = t.contiguous();
                    return std::vector<float>(c.data(), c.data() + c.numel());
                }
            FAIL("no 1.running_var");
            return std::vector<float>();
        };
        const std::vector<float> kept = running_var();
        const CheckpointLoadReport r = b.ckpt.load(path, {.strict = false});
        CHECK(r.missing == std::vector<std::string>{"net.1.running_var"});
        CHECK(running_var() == kept);
        CHECK(b.step == 3);
    }
}

TEST_CASE("a diverged state is not saved over the last good checkpoint") {
    const Fixture fixture("diverged.safetensors");
    const auto& [data, path] = fixture;
    Run a(data);
    a.train(2);
    a.ckpt.save(path);
    const std::string good = read_bytes(path);
    a.train(3);
    a.net.parameters()[0].value().data()[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH_AS(a.ckpt.save(path), doctest::Contains("tensor 'net.0.weight' holds 1 non-finite value"), Error);
    CHECK(read_bytes(path) == good);
}
