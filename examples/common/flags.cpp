// The examples' command line (common/flags.hpp): the one file that compiles CLI11.
#include "flags.hpp"

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <exception>

#include "example.hpp"

namespace ember_examples {

struct Flags::Cli {
    explicit Cli(const std::string& description) : app(description) {}
    CLI::App app;
};

namespace {
// CLI11's own number checks word a failed positive check as "not in range 0 to 1.797e308"
// (all 309 digits); these say what was expected.
CLI::Validator number_check(const Check& check) {
    const std::string expected = check.kind == Check::Kind::positive       ? "a number > 0"
                                 : check.kind == Check::Kind::non_negative ? "a number >= 0"
                                 : check.kind == Check::Kind::none         ? "a finite number"
                                                                           : "a number in [" + CLI::detail::to_string(check.min) +
                                                                                 ", " + CLI::detail::to_string(check.max) + "]";
    const std::string type = check.kind == Check::Kind::positive       ? "POSITIVE"
                             : check.kind == Check::Kind::non_negative ? "NONNEGATIVE"
                             : check.kind == Check::Kind::none         ? "FINITE"
                                                                       : "RANGE";
    return CLI::Validator(
        [check, expected](std::string& text) -> std::string {
            double v = 0;
            if (!CLI::detail::lexical_cast(text, v)) return "expected " + expected + ", got '" + text + "'";
            const bool ok = std::isfinite(v) && (check.kind == Check::Kind::positive       ? v > 0
                                                 : check.kind == Check::Kind::non_negative ? v >= 0
                                                 : check.kind == Check::Kind::none         ? true
                                                                                           : v >= check.min && v <= check.max);
            return ok ? std::string() : "expected " + expected + ", got " + text;
        },
        type);
}

// Every number is checked, a plain one too: "nan" and "inf" parse as doubles, and a run
// would otherwise start with them and fail (or quietly train on NaN) later.
CLI::Option* checked(CLI::Option* option, const Check& check) {
    return option->check(number_check(check))->capture_default_str();
}

// CLI11 reads "-1" into an unsigned integer as 2^64 - 1.
CLI::Validator whole_number_check() {
    return CLI::Validator(
        [](std::string& text) -> std::string {
            const bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
            return digits ? std::string() : "expected a whole number >= 0, got '" + text + "'";
        },
        "UINT");
}
}  // namespace

Flags::Flags(const std::string& description) : cli_(std::make_unique<Cli>(description)) {}

Flags::Flags(const std::string& description, ExampleOptions& o) : Flags(description) {
    example_ = &o;
    CLI::App& app = cli_->app;
    if (o.out.empty()) o.out = "out/" + o.name;
    app.add_option("--data", o.data, "directory with the IDX files (default: $EMBER_DATA, then the standard places)");
    app.add_option("--dataset", o.dataset, "mnist or fashion")->check(CLI::IsMember({"mnist", "fashion"}))->capture_default_str();
    app.add_option("--out", o.out, "output directory")->capture_default_str();
    app.add_option("--classifier", o.classifier,
                   "classifier checkpoint from classifier_mnist, for the quality numbers at the end "
                   "(default: out/classifier_<dataset>/classifier.safetensors)");
    add("--epochs", o.epochs, "passes over the training set", Check::positive);
    app.add_option("--iters", o.iters, "training steps (overrides --epochs)")->check(number_check(Check::positive));
    add("--batch", o.batch, "batch size", Check::positive);
    add("--lr", o.lr, "learning rate", Check::positive);
    add("--seed", o.seed, "random seed (initialisation, data order, noise)");
    app.add_option("--threads", o.threads, "threads for ember's kernels and GEMM (default: all)")
        ->check(number_check(Check::positive));
    add("--n-samples", o.n_samples, "images written to samples.npy", Check::positive);
    app.add_flag("--resume", o.resume, "continue from checkpoint.safetensors in --out");
    app.add_flag("--quick", o.quick, "a short run for smoke tests (explicit --iters/--n-samples win)");
}

Flags::~Flags() = default;

Flags& Flags::add(const std::string& name, double& value, const std::string& help, Check check) {
    return checked(cli_->app.add_option(name, value, help), check), *this;
}
Flags& Flags::add(const std::string& name, int& value, const std::string& help, Check check) {
    return checked(cli_->app.add_option(name, value, help), check), *this;
}
Flags& Flags::add(const std::string& name, std::int64_t& value, const std::string& help, Check check) {
    return checked(cli_->app.add_option(name, value, help), check), *this;
}
Flags& Flags::add(const std::string& name, std::uint64_t& value, const std::string& help, Check check) {
    return checked(cli_->app.add_option(name, value, help)->check(whole_number_check()), check), *this;
}
Flags& Flags::add(const std::string& name, std::string& value, const std::string& help) {
    return cli_->app.add_option(name, value, help)->capture_default_str(), *this;
}
Flags& Flags::add(const std::string& name, bool& value, const std::string& help) {
    return cli_->app.add_option(name, value, help)->capture_default_str(), *this;
}
Flags& Flags::choice(const std::string& name, std::string& value, const std::vector<std::string>& allowed,
                     const std::string& help) {
    return cli_->app.add_option(name, value, help)->check(CLI::IsMember(allowed))->capture_default_str(), *this;
}
Flags& Flags::flag(const std::string& name, bool& value, const std::string& help) {
    return cli_->app.add_flag(name, value, help), *this;
}
Flags& Flags::positional(const std::string& name, std::string& value, const std::string& help) {
    return cli_->app.add_option(name, value, help), *this;
}

std::string command_line(int argc, char** argv) {
    std::string line;
    for (int i = 0; i < argc; ++i) {
        if (i > 0) line += ' ';
        line += argv[i];
    }
    return line;
}

bool Flags::given(const std::string& name) const { return cli_->app.count(name) > 0; }

std::optional<int> Flags::parse(int argc, char** argv) {
    try {
        cli_->app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return cli_->app.exit(e);
    }
    return std::nullopt;
}

int Flags::run(int argc, char** argv, const std::string& name, const bool& quick, const std::function<int()>& body) {
    if (const std::optional<int> exit = parse(argc, argv)) return *exit;
    if (quick)
        for (const auto& set : quick_defaults_) set();
    return run_main(name, body);
}

int Flags::run(int argc, char** argv, QuickRun quick, const std::function<int()>& body) {
    EMBER_CHECK(example_ != nullptr, "Flags::run", "a training example's run needs Flags(description, options)");
    ExampleOptions& o = *example_;
    if (const std::optional<int> exit = parse(argc, argv)) return *exit;
    if (o.quick) {
        if (!given("--iters")) o.iters = quick.iters;
        if (!given("--n-samples")) o.n_samples = quick.samples;
        for (const auto& set : quick_defaults_) set();
    }
    if (o.classifier.empty()) o.classifier = "out/classifier_" + o.dataset + "/classifier.safetensors";
    o.command = command_line(argc, argv);
    return run_main(o.name, body);
}

}  // namespace ember_examples
