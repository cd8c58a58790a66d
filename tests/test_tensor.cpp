// Tensor storage, views, random numbers and errors.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <numbers>
#include <numeric>
#include <thread>
#include <vector>

#include <ember/ember.hpp>

using namespace ember;

TEST_CASE("storage is 64-byte aligned and pooled") {
    Tensor<float> t = Tensor<float>::zeros({3, 5});
    CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
    const auto before = pool_stats();
    { Tensor<float> u = Tensor<float>::empty({1000}); }
    { Tensor<float> u = Tensor<float>::empty({1000}); }  // reuses the buffer just released
    const auto after = pool_stats();
    CHECK(after.requests - before.requests == 2);
    CHECK(after.system_allocs - before.system_allocs <= 1);
}

TEST_CASE("a tensor that cannot be allocated is an ember::Error naming its shape and size") {
    // 2^60 floats: within what an Index can count, beyond any machine's memory.
    CHECK_THROWS_WITH_AS((void)Tensor<float>::empty(Shape{Index(1) << 30, Index(1) << 30}),
                         "Tensor: cannot allocate a tensor of shape [1073741824,1073741824]: 4611686018427387904 bytes "
                         "of float (out of memory)",
                         Error);
    // 2^61 doubles: a valid Shape, but 2^64 bytes overflow any size.
    CHECK_THROWS_WITH_AS((void)Tensor<double>::zeros(Shape{Index(1) << 31, Index(1) << 30}),
                         doctest::Contains("has more elements than memory can address"), Error);
}

TEST_CASE("views share the buffer; contiguous copies only when needed") {
    Tensor<double> t = Tensor<double>::arange(24).reshape({2, 3, 4});
    CHECK(t.shape() == Shape{2, 3, 4});
    Tensor<double> r = t.reshape({6, -1});
    CHECK(r.shape() == Shape{6, 4});
    CHECK(r.shares_storage_with(t));

    Tensor<double> s = t.slice(2, 1, 3);  // [2,3,2]
    CHECK(s.shares_storage_with(t));
    CHECK_FALSE(s.is_contiguous());
    CHECK(s.at({1, 2, 0}) == 1 * 12 + 2 * 4 + 1);
    CHECK_THROWS_WITH_AS(s.reshape({12}),
                         "reshape: tensor of shape [2,3,2] cannot be viewed as [12] in its layout; call contiguous() first", Error);
    CHECK_FALSE(s.view_strides({12}).has_value());
    CHECK(s.view_strides({2, 3, 2, 1}).has_value());  // a new axis of size 1 needs no copy
    Tensor<double> c = s.contiguous();
    CHECK(c.is_contiguous());
    CHECK_FALSE(c.shares_storage_with(t));
    CHECK(c.to_vector() == s.to_vector());
    CHECK(t.contiguous().shares_storage_with(t));

    Tensor<double> tr = t.transpose(0, 2);  // [4,3,2]
    CHECK(tr.at({3, 1, 0}) == t.at({0, 1, 3}));
    Tensor<double> stepped = Tensor<double>::arange(10).slice(0, 1, 10, 3);
    CHECK(stepped.to_vector() == std::vector<double>{1, 4, 7});

    Tensor<double> row = Tensor<double>::from({3}, {1, 2, 3});
    Tensor<double> e = row.expand({2, 3});
    CHECK(e.strides()[0] == 0);
    CHECK(e.to_vector() == std::vector<double>{1, 2, 3, 1, 2, 3});
}

TEST_CASE("shape errors are readable") {
    CHECK_THROWS_WITH_AS(Tensor<float>::from({2, 2}, {1, 2, 3}), "Tensor::from: shape [2,2] needs 4 values, got 3", Error);
    CHECK_THROWS_WITH_AS(Tensor<float>::zeros({2, 3}).reshape({4, 2}),
                         "reshape: cannot reshape [2,3] (6 elements) to [4,2]", Error);
    CHECK_THROWS_WITH_AS(Tensor<float>::zeros({2, 3}).slice(1, 2, 5), "slice: range [2,5) out of bounds for axis 1 of shape [2,3]",
                         Error);
    CHECK_THROWS_WITH_AS((Shape{1, 2, 3, 4, 5}), "shape: rank 5 exceeds the maximum rank 4", Error);
    CHECK_THROWS_WITH_AS(Tensor<float>::zeros({2, 3}).expand({3, 3}), "expand: shapes [2,3] and [3,3] cannot be broadcast together",
                         Error);
}

TEST_CASE("random numbers are reproducible and independent of the thread count") {
    // 100001 draws: enough blocks to be spread over two threads.
    Generator g1(42), g2(42);
    Tensor<float> a = normal<float>({100001}, g1);
    set_num_threads(1);
    Tensor<float> b = normal<float>({100001}, g2);
    set_num_threads(2);
    CHECK(a.to_vector() == b.to_vector());
    // Element i depends only on (seed, i): a short draw is a prefix of a long one, whatever
    // the grouping of blocks into SIMD lanes.
    Generator g3(42);
    const std::vector<float> head = normal<float>({37}, g3).to_vector();
    const std::vector<float> all = a.to_vector();
    CHECK(head == std::vector<float>(all.begin(), all.begin() + 37));
    // The vectorised Box-Muller against the formula in scalar double, on the first blocks.
    detail::UniformLanes lanes;
    detail::uniform_lanes(0, 42, lanes);
    Generator g4(42);
    const Tensor<double> d = normal<double>({2 * detail::kRandomLanes}, g4);
    for (int l = 0; l < detail::kRandomLanes; ++l) {
        const double r = std::sqrt(-2.0 * std::log(lanes.u0[l])), angle = 2.0 * std::numbers::pi * lanes.u1[l];
        CHECK(d.data()[2 * l] == doctest::Approx(r * std::cos(angle)).epsilon(1e-13));
        CHECK(d.data()[2 * l + 1] == doctest::Approx(r * std::sin(angle)).epsilon(1e-13));
    }
    // Successive draws differ; a new generator with the same seed repeats them.
    Tensor<float> a2 = normal<float>({1001}, g1);
    CHECK(a2.to_vector() != a.to_vector());

    // Moments of 200k draws: mean within 4 standard errors of the truth.
    Generator g(7);
    Tensor<double> n = normal<double>({200000}, g, 1.0, 2.0);
    double m = 0, v = 0;
    for (double x : n.to_vector()) m += x;
    m /= 200000;
    for (double x : n.to_vector()) v += (x - m) * (x - m);
    v /= 199999;
    CHECK(std::fabs(m - 1.0) < 4 * 2.0 / std::sqrt(200000.0));
    CHECK(std::fabs(v - 4.0) < 4 * 4.0 * std::sqrt(2.0 / 200000));

    Tensor<double> u = uniform<double>({100000}, g, -1.0, 3.0);
    double um = 0;
    for (double x : u.to_vector()) {
        CHECK_MESSAGE((x >= -1 && x < 3), x);
        um += x;
    }
    CHECK(std::fabs(um / 100000 - 1.0) < 4 * (4 / std::sqrt(12.0)) / std::sqrt(100000.0));

    Tensor<float> bern = bernoulli<float>({100000}, g, 0.3);
    double ones = 0;
    for (float x : bern.to_vector()) ones += x;
    CHECK(std::fabs(ones / 100000 - 0.3) < 4 * std::sqrt(0.3 * 0.7 / 100000));

    auto p = permutation(1000, g);
    std::vector<std::int64_t> sorted = p;
    std::sort(sorted.begin(), sorted.end());
    for (std::int64_t i = 0; i < 1000; ++i) CHECK(sorted[static_cast<std::size_t>(i)] == i);
    Generator h(7);
    (void)normal<double>({200000}, h, 1.0, 2.0);
    (void)uniform<double>({100000}, h, -1.0, 3.0);
    (void)bernoulli<float>({100000}, h, 0.3);
    CHECK(permutation(1000, h) == p);
}

TEST_CASE("Philox in AVX-512 registers gives the bits of the portable loop") {
    // Counters whose low word wraps around inside a group of lanes, and the last ones.
    for (std::uint64_t first : {0ull, 1ull, 0xFFFFFFF0ull, 0xFFFFFFFFull, 0x1FFFFFFE5ull, 123456789012345ull, ~0ull - 40})
        for (std::uint64_t key : {0ull, 42ull, 0xDEADBEEFCAFEBABEull, ~0ull}) {
            detail::PhiloxLanes fast, portable;
            detail::philox_lanes(first, key, fast);
            detail::philox_lanes_portable(first, key, portable);
            for (int w = 0; w < 4; ++w)
                for (int l = 0; l < detail::kRandomLanes; ++l) CHECK(fast.r[w][l] == portable.r[w][l]);
        }
}

TEST_CASE("a part of a draw of normals equals those elements of the whole draw") {
    // sample::sgld draws each group of chains' noise on its own thread with normal_elements.
    Generator whole_gen(11), part_gen(11);
    part_gen.set_offset(5);
    whole_gen.set_offset(5);
    const std::vector<double> whole = normal<double>({1001}, whole_gen, 0.5, 2.0).to_vector();
    for (auto [begin, end] : {std::pair<std::int64_t, std::int64_t>{0, 1001}, {1, 2}, {7, 500}, {500, 1001}, {1000, 1001}, {64, 64}}) {
        std::vector<double> part(static_cast<std::size_t>(end - begin));
        normal_elements(part_gen, part_gen.offset(), begin, end, 0.5, 2.0, part.data());
        CHECK(part == std::vector<double>(whole.begin() + begin, whole.begin() + end));
    }
    CHECK(part_gen.offset() == 5);  // not advanced
}

TEST_CASE("a permuted layout: dense, made contiguous by a transpose, reshaped as a view, kept by elementwise ops") {
    // [N, C, H, W] stored as [C, H, W, N] (a layout the convolutions use): 19 samples, so the
    // transposes have whole SIMD tiles and edges.
    Generator gen(3);
    const Tensor<double> ref = uniform<double>({19, 3, 4, 5}, gen, -1, 1);
    const int samples_last[] = {1, 2, 3, 0};
    Tensor<double> t = Tensor<double>::empty_in_order(ref.shape(), samples_last);
    CHECK(t.strides() == Strides{1, 4 * 5 * 19, 5 * 19, 19});
    CHECK(t.is_dense());
    CHECK_FALSE(t.is_contiguous());
    for (Index n = 0; n < 19; ++n)
        for (Index c = 0; c < 3; ++c)
            for (Index y = 0; y < 4; ++y)
                for (Index x = 0; x < 5; ++x) t.at({n, c, y, x}) = ref.at({n, c, y, x});
    CHECK(t.contiguous().to_vector() == ref.to_vector());
    CHECK(t.clone().to_vector() == ref.to_vector());
    CHECK(t.memory_order().shape() == Shape{19 * 60});
    CHECK(t.memory_order().data()[1] == ref.at({1, 0, 0, 0}));
    CHECK_FALSE(ref.slice(1, 0, 2).is_dense());
    CHECK(ref.transpose(0, 3).is_dense());
    CHECK_THROWS_WITH_AS(ref.slice(1, 0, 2).memory_order(), "Tensor::memory_order: the tensor of shape [19,2,4,5] is not dense", Error);

    // Flattening keeps the layout as a view ([N, C·H·W] with the samples varying fastest),
    // and so does its inverse; reshapes that would mix the samples with other axes need a
    // contiguous tensor.
    const Tensor<double> flat = t.reshape({19, -1});
    CHECK(flat.shape() == Shape{19, 60});
    CHECK(flat.strides()[0] == 1);
    CHECK(flat.strides()[1] == 19);
    CHECK(flat.shares_storage_with(t));
    CHECK(flat.contiguous().to_vector() == ref.reshape({19, 60}).to_vector());
    CHECK(flat.reshape({19, 3, 4, 5}).strides() == t.strides());
    CHECK(t.reshape({19, 3, 20}).strides() == Strides{1, 20 * 19, 19});
    CHECK_THROWS_WITH_AS(t.reshape({3, 19, 20}),
                         "reshape: tensor of shape [19,3,4,5] cannot be viewed as [3,19,20] in its layout; call contiguous() first",
                         Error);

    // Other orders: [A, B, C] stored as [C, A, B] is a transposed [A·B, C] matrix; stored as
    // [B, A, C] it is not, and is copied element by element.
    for (const std::array<int, 3>& order : {std::array<int, 3>{2, 0, 1}, std::array<int, 3>{1, 0, 2}}) {
        const Tensor<double> want = uniform<double>({4, 6, 5}, gen, -1, 1);
        Tensor<double> p = Tensor<double>::empty_in_order(want.shape(), order);
        CHECK(p.is_dense());
        for (Index i = 0; i < want.numel(); ++i) p.at({i / 30, i / 5 % 6, i % 5}) = want.flat(i);
        CHECK(p.contiguous().to_vector() == want.to_vector());
    }
    const int repeated[] = {0, 0, 1, 2};
    CHECK_THROWS_WITH_AS(Tensor<double>::empty_in_order(ref.shape(), repeated),
                         "Tensor::empty_in_order: the order is not a permutation of the axes of [19,3,4,5]", Error);

    // Operands in one layout give a result in it; mixed layouts give a contiguous one.
    const Tensor<double> doubled = t + t * 1.0;
    CHECK(doubled.strides() == t.strides());
    CHECK(doubled.contiguous().to_vector() == Tensor<double>(ref + ref).to_vector());
    const Tensor<double> mixed = t + ref;
    CHECK(mixed.is_contiguous());
    CHECK(mixed.to_vector() == Tensor<double>(ref + ref).to_vector());

    // Gradients through an elementwise op keep the layout when the incoming gradient has it.
    const Var<double> v(t, true);
    const Var<double> h = leaky_relu(v, 0.2);
    CHECK(h.value().strides() == t.strides());
    const Tensor<double> g = Tensor<double>::empty_in_order(ref.shape(), samples_last);
    for (Index i = 0; i < g.numel(); ++i) g.data()[i] = 0.5 + static_cast<double>(i % 7);
    const Tensor<double> dv = grad(h, {v}, {}, g)[0].value();
    CHECK(dv.strides() == t.strides());
    for (Index i = 0; i < t.numel(); ++i) CHECK(dv.data()[i] == (t.data()[i] > 0 ? g.data()[i] : 0.2 * g.data()[i]));
}

TEST_CASE("expressions over tensors evaluate without a graph, in float and double") {
    Tensor<float> x = Tensor<float>::from({2, 2}, {1, 2, 3, 4});
    Tensor<float> y = x * x + 1.0f;
    CHECK(y.to_vector() == std::vector<float>{2, 5, 10, 17});
    Tensor<double> z = Tensor<double>::from({3}, {-1, 0, 1});
    Tensor<double> r = relu(z) + maximum(z, 0.5);
    CHECK(r.to_vector() == std::vector<double>{0.5, 0.5, 2});
    // large tensors exercise the threaded path
    Tensor<float> big = Tensor<float>::full({1 << 20}, 2.0f);
    Tensor<float> sq = square(big) - 3.0f;
    CHECK(sq.flat(12345) == 1.0f);
    CHECK(sq.flat((1 << 20) - 1) == 1.0f);
}

// The thread pool behind parallel_chunks / parallel_for / parallel_tasks (core/thread_pool.hpp).
TEST_CASE("parallel loops: every index once, nested calls inline, exceptions rethrown, any thread count") {
    const int saved = num_threads();
    for (int threads : {1, 2, 3, 8}) {
        CAPTURE(threads);
        set_num_threads(threads);
        // Pieces cover [0, n) exactly once, with aligned boundaries, for sizes around the
        // piece count.
        for (std::int64_t n : {0, 1, 7, 64, 1000, 100003}) {
            CAPTURE(n);
            std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
            std::atomic<int> misaligned{0};
            parallel_chunks(n, 8, 16, [&](std::int64_t b, std::int64_t e) {
                if (b % 16 != 0) ++misaligned;
                for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
            });
            CHECK(misaligned == 0);
            CHECK(std::all_of(hits.begin(), hits.end(), [](const auto& h) { return h == 1; }));
        }
        // A loop inside a task runs on the task's thread: no deadlock, every index once.
        std::vector<std::atomic<int>> nested(64 * 1000);
        std::atomic<int> outside{0};
        parallel_tasks(4, [&](int t) {
            if (!in_parallel_region()) ++outside;
            parallel_for(16 * 1000, [&](std::int64_t i) { ++nested[static_cast<std::size_t>(t * 16 * 1000 + i)]; });
        });
        CHECK(std::all_of(nested.begin(), nested.end(), [](const auto& h) { return h == 1; }));
        CHECK(outside == 0);
        CHECK_FALSE(in_parallel_region());
        // The first exception comes back to the caller; the other tasks still ran.
        std::atomic<int> ran{0};
        CHECK_THROWS_WITH_AS(parallel_tasks(6,
                                            [&](int t) {
                                                ++ran;
                                                if (t == 3) detail::fail("task", "three");
                                            }),
                             "task: three", Error);
        CHECK(ran == 6);
        // The pool is usable again after an exception, and from several user threads at once
        // (a call that finds the pool busy runs on its own thread).
        std::vector<std::int64_t> sums(4);
        std::vector<std::thread> users;
        for (int u = 0; u < 4; ++u)
            users.emplace_back([&, u] {
                for (int rep = 0; rep < 50; ++rep) {
                    std::vector<std::int64_t> part(static_cast<std::size_t>(private_sum_parts(10000)));
                    parallel_tasks(static_cast<int>(part.size()), [&](int k) {
                        const std::int64_t parts = static_cast<std::int64_t>(part.size());
                        for (std::int64_t i = 10000 * k / parts; i < 10000 * (k + 1) / parts; ++i) part[static_cast<std::size_t>(k)] += i;
                    });
                    sums[static_cast<std::size_t>(u)] = std::accumulate(part.begin(), part.end(), std::int64_t{0});
                }
            });
        for (auto& u : users) u.join();
        CHECK(sums == std::vector<std::int64_t>(4, 10000 * 9999 / 2));
    }
    set_num_threads(saved);
}
