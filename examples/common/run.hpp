#pragma once
// The plumbing every training example shares, so that an example's file shows its paper's
// algorithm and little else. Compiled once (common/run.cpp) into the examples' common
// library, with the command line (common/flags.hpp).
//
//   int main(int argc, char** argv) {
//       Options o{...};                                     // ExampleOptions + the model's own
//       ember_examples::Flags flags("ebgan_mnist: ...", o); // --data --out --epochs --iters ...
//       flags.add("--margin", o.margin, "margin of the hinge", Check::positive);
//       return flags.run(argc, argv, {.iters = 10}, [&] { return train(o); });
//   }
//
//   int train(Options& o) {
//       ember_examples::TrainingRun run(o, {.batches_per_epoch = batches.batches_per_epoch()});
//       run.checkpoint.add("gen", G).add("noise", noise).add("step", run.step);  // what --resume restores
//       run.start({{"G parameters", G.parameter_count()}});  // resumes, prints the banner
//       ember_examples::MetricsWindow window(run, {"loss_d", "loss_g"});
//       while (run.running()) {
//           ... one step of the paper's algorithm ...
//           window.add(run.finish_step(), {loss_d, loss_g});    // progress, metrics.csv
//           if (run.epoch_done()) run.save_checkpoint(), save_pictures();
//       }
//       run.quality(samples01);                  // the classifier's verdict, into the summary
//       return run.finish(window);               // final line, summary.json
//   }
//
// summary.json, written atomically at the end of a run, is what scripts/results reads to
// make docs/results.md: the command, the machine, the wall time, the last logged window of
// metrics, the example's own results and the quality numbers.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <ember/core/tensor.hpp>
#include <ember/train/checkpoint.hpp>
#include <ember/train/metrics.hpp>
#include <ember/train/progress.hpp>

#include "example.hpp"
#include "flags.hpp"

namespace ember_examples {

class MetricsWindowBase;

// ---- a training run -----------------------------------------------------------------------

struct RunShape {
    std::int64_t batches_per_epoch;
    std::int64_t batches_per_step = 1;  // batches of real data one training step reads
    std::int64_t log_every = 50;        // steps per row of metrics.csv
    bool log_at_epoch_end = false;      // also a row at the end of every pass over the data
    std::int64_t progress_every = 500;  // steps per progress line when stderr is not a terminal
    // false in the processes of a data-parallel job other than its first: they train alike
    // but print nothing and write no file.
    bool reports = true;
};

// One fact of the opening line: "G parameters 12345", "margin 1".
struct Fact {
    Fact(std::string name, double value);
    template <class I>
        requires std::is_integral_v<I>
    Fact(std::string name, I value) : text(std::move(name) + " " + std::to_string(value)) {}
    Fact(std::string name, const std::string& value);
    Fact(std::string name, const char* value);
    std::string text;
};

class TrainingRun {
public:
    // Sets the threads, creates --out and fixes the length of the run: --iters steps, or
    // --epochs passes over the data.
    TrainingRun(ExampleOptions& o, RunShape shape);
    ~TrainingRun();

    // If --resume, loads `checkpoint`; then prints the opening line: the dataset, `facts`, the
    // batch, lr, steps, seed and threads. Call it once, before the loop and before making the
    // MetricsWindow (which keeps the rows of metrics.csv before the resumed step).
    void start(std::initializer_list<Fact> facts);

    bool running() const { return step < total; }
    // Counts a finished step and returns the new step count.
    std::int64_t finish_step();
    // Whether the step just finished ended a pass over the data, or the run.
    bool epoch_done() const;
    // Passes over the data so far (real batches read / batches per epoch).
    double epoch() const;

    void save_checkpoint() const;

    // Classifies samples01 ([N,1,28,28] in [0,1]) with classifier_mnist's network, prints the
    // verdict (or how to get the classifier) and keeps it for the summary under `label`.
    void quality(const ember::Tensor<float>& samples01, const std::string& label = "samples");
    // A number of the example's own for the final line and the summary ("test ELBO", ...).
    void result(const std::string& name, double value);

    ExampleOptions& options;
    const std::filesystem::path out;
    const int threads;
    const std::int64_t total;  // steps of the whole run
    const RunShape shape;
    std::int64_t step = 0;     // steps finished; add it to the checkpoint as "step"
    ember::Checkpoint<float> checkpoint;

private:
    friend class MetricsWindowBase;
    struct Report;
    std::unique_ptr<Report> report_;
    std::optional<ember::Progress> progress_;  // from start(), which knows the first step

    void progress(const std::vector<std::string>& names, const std::vector<double>& values);

public:
    // Prints the final line (steps, time, the last logged metrics, the results) and writes
    // summary.json. Returns 0, the program's exit code.
    int finish(const MetricsWindowBase& window);
};

// The means of a few metrics over the steps since the last row of metrics.csv, whose columns
// are "epoch", the names, then `extra_columns`: values measured now and then (a test score),
// given to add() for the rows that have them and empty in the others.
class MetricsWindowBase {
public:
    MetricsWindowBase(TrainingRun& run, std::vector<std::string> names, std::vector<std::string> extra_columns);
    const std::vector<std::string>& names() const { return names_; }
    // The means written in the last row; empty before the first.
    const std::vector<double>& last() const { return last_; }

protected:
    void after_step(std::int64_t step, const std::vector<double>& step_values, const std::vector<double>& means,
                    const std::vector<std::pair<std::string, double>>& extra);
    bool row_due(std::int64_t step) const;

    TrainingRun& run_;
    std::vector<std::string> names_;
    std::vector<double> last_;
    std::optional<ember::MetricsLog> log_;  // none when the run does not report
};

// `Sum` is the type the window adds in (float for an example whose losses are floats and
// were always averaged so): the means are sum / Sum(count).
template <class Sum = double>
class MetricsWindow : public MetricsWindowBase {
public:
    MetricsWindow(TrainingRun& run, std::vector<std::string> names, std::vector<std::string> extra_columns = {})
        : MetricsWindowBase(run, std::move(names), std::move(extra_columns)), sums_(names_.size(), Sum(0)) {}

    // The values of step `step`: shown in the progress line; their window means go to
    // metrics.csv every log_every steps (and at the end of an epoch if the run says so) and at
    // the end of the run, with the `extra` columns when the row is due.
    void add(std::int64_t step, std::initializer_list<Sum> values,
             const std::vector<std::pair<std::string, double>>& extra = {}) {
        EMBER_CHECK(values.size() == sums_.size(), "MetricsWindow::add", "expected ", sums_.size(), " values, got ",
                    values.size());
        std::vector<double> now;
        std::size_t i = 0;
        for (const Sum v : values) sums_[i++] += v, now.push_back(static_cast<double>(v));
        ++count_;
        std::vector<double> means;
        if (row_due(step)) {
            for (Sum& s : sums_) means.push_back(static_cast<double>(s / static_cast<Sum>(count_))), s = Sum(0);
            count_ = 0;
        }
        after_step(step, now, means, extra);
    }

private:
    std::vector<Sum> sums_;
    int count_ = 0;
};

}  // namespace ember_examples
