#pragma once
// The command line of an example program. CLI11 parses it, behind this small interface in
// common/flags.cpp: CLI11's headers take longer to compile than most examples, so they are
// compiled once, not in every program.
//
//   ember_examples::Flags flags("toy2d: GANs on 2-D toy distributions");
//   flags.add("--iters", o.iters, "training iterations", Check::positive)
//        .choice("--dist", o.dist, {"grid25", "ring8"}, "the data distribution")
//        .flag("--quick", o.quick, "a short run for smoke tests")
//        .quick_default("--iters", o.iters, std::int64_t{200});   // --quick, unless --iters is given
//   return flags.run(argc, argv, "toy2d", o.quick, [&] { return train(o); });
//
// A training example registers the flags every example has with Flags(description, options)
// (common/run.hpp).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ember_examples {

struct ExampleOptions;

// A check of an option's value; errors name the option and the range.
struct Check {
    enum class Kind { none, positive, non_negative, range } kind = Kind::none;
    double min = 0, max = 0;  // for Kind::range, both included

    static Check range(double lo, double hi) { return {Kind::range, lo, hi}; }
    static const Check none, positive, non_negative, unit_interval;
};
inline const Check Check::none{};
inline const Check Check::positive{Check::Kind::positive};
inline const Check Check::non_negative{Check::Kind::non_negative};
inline const Check Check::unit_interval{Check::Kind::range, 0.0, 1.0};

// What --quick changes in a training example when the user did not give the flag.
struct QuickRun {
    std::int64_t iters = 100;
    std::int64_t samples = 100;
};

// The command line as typed, its words joined by spaces (summary.json records it).
std::string command_line(int argc, char** argv);

class Flags {
public:
    explicit Flags(const std::string& description);
    // The flags of ExampleOptions, with the values already in `o` as defaults: --data
    // --dataset --out --classifier --epochs --iters --batch --lr --seed --threads --n-samples
    // --resume --quick.
    Flags(const std::string& description, ExampleOptions& o);
    ~Flags();
    Flags(const Flags&) = delete;
    Flags& operator=(const Flags&) = delete;

    // An option with a value, its default shown in --help; `bool` options take 0 or 1.
    Flags& add(const std::string& name, double& value, const std::string& help, Check check = Check::none);
    Flags& add(const std::string& name, int& value, const std::string& help, Check check = Check::none);
    Flags& add(const std::string& name, std::int64_t& value, const std::string& help, Check check = Check::none);
    Flags& add(const std::string& name, std::uint64_t& value, const std::string& help, Check check = Check::none);
    Flags& add(const std::string& name, std::string& value, const std::string& help);
    Flags& add(const std::string& name, bool& value, const std::string& help);
    // An option whose value must be one of `allowed`.
    Flags& choice(const std::string& name, std::string& value, const std::vector<std::string>& allowed,
                  const std::string& help);
    // A flag without a value: true when given.
    Flags& flag(const std::string& name, bool& value, const std::string& help);
    // A positional argument (optional; given() tells whether it was).
    Flags& positional(const std::string& name, std::string& value, const std::string& help);
    // When --quick is on, `value` becomes `quick` unless the user gave `name`.
    template <class T>
    Flags& quick_default(const std::string& name, T& value, T quick) {
        quick_defaults_.push_back([this, name, &value, quick] {
            if (!given(name)) value = quick;
        });
        return *this;
    }

    bool given(const std::string& name) const;

    // Parses argv. --help, and a bad command line (after printing what is wrong), give the
    // exit code to return; otherwise nullopt, and the values are set.
    std::optional<int> parse(int argc, char** argv);
    // Parses, applies the quick defaults if `quick` is then true, and runs `body`: an exception
    // becomes "name: message" on stderr and exit code 1.
    int run(int argc, char** argv, const std::string& name, const bool& quick, const std::function<int()>& body);
    // The same for a training example: --quick also sets --iters and --n-samples (unless
    // given), the classifier's default path follows --dataset, and the options record the
    // command line.
    int run(int argc, char** argv, QuickRun quick, const std::function<int()>& body);

private:
    struct Cli;
    std::unique_ptr<Cli> cli_;
    ExampleOptions* example_ = nullptr;
    std::vector<std::function<void()>> quick_defaults_;
};

}  // namespace ember_examples
