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
//       ember_examples::MetricsWindow window(run, {"loss_d", "loss_g"});
//       run.start({{"G parameters", G.parameter_count()}});  // resumes, prints the banner
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
//
// What a run guarantees:
//  - a batch larger than the data set, and a resumed run whose --lr, --batch or --seed (or
//    the example's own same_on_resume flags) differ from the checkpoint's, are refused with a
//    message before anything is loaded or written;
//  - a step whose metrics are not finite (the training diverged) ends the run with an error
//    naming the step and the metric, before the epoch's checkpoint and pictures would be
//    overwritten;
//  - N steps, and N/2 steps then --resume to N, write the same metrics.csv: the metrics
//    window is part of the checkpoint, a row is written at every epoch end (where the
//    checkpoint is saved) and a row written only because a run ended is replaced on resume.
#include <algorithm>
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

// What summary.json records of a run besides the options and the machine.
struct RunSummary {
    double seconds = 0;  // wall time
    int threads = 1;
    std::int64_t steps = 0, steps_this_run = 0;
    std::vector<std::pair<std::string, double>> metrics;  // the last logged window
    std::vector<std::pair<std::string, double>> results;  // the example's own numbers
};
// Writes <o.out>/summary.json atomically, for a program that is not a TrainingRun (toy2d):
// the same fields as TrainingRun::finish writes, without sample quality.
void write_summary(const ExampleOptions& o, const RunSummary& s);

// ---- a training run -----------------------------------------------------------------------

struct RunShape {
    std::int64_t batches_per_epoch;
    std::int64_t batches_per_step = 1;  // batches of real data one training step reads
    std::int64_t log_every = 50;        // steps per row of metrics.csv, besides one at every epoch end
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

    // If --resume, loads `checkpoint` (refusing other values of the same_on_resume flags); opens
    // metrics.csv (keeping the rows before the resumed step); then prints the opening line:
    // the dataset, `facts`, the batch, lr, steps, seed and threads. Call it once, before the
    // loop and after making the MetricsWindow.
    void start(std::initializer_list<Fact> facts);

    bool running() const { return step < total; }
    // Counts a finished step and returns the new step count.
    std::int64_t finish_step();
    // Whether the step just finished ended a pass over the data, or the run.
    bool epoch_done() const;
    // Whether it ended a pass over the data.
    bool epoch_boundary() const;
    // Passes over the data so far (real batches read / batches per epoch).
    double epoch() const;

    // Saves the checkpoint (with the metrics window's running sums and the flags below).
    void save_checkpoint();
    // A flag a resumed run must give as the checkpoint's run did: its value is written in the
    // checkpoint's metadata, and --resume with another value is refused before anything is
    // loaded. The run registers --lr, --batch and --seed itself.
    TrainingRun& same_on_resume(const std::string& flag, const std::string& value);

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
    MetricsWindowBase* window_ = nullptr;  // the run's metrics window, once made
    bool started_ = false;
    std::int64_t checkpoint_step_ = -1;    // the step of the last checkpoint saved or loaded
    std::vector<std::pair<std::string, std::string>> same_on_resume_;  // flag, value
    std::optional<ember::Progress> progress_;  // from start(), which knows the first step

    void progress(const std::vector<std::string>& names, const std::vector<double>& values);

public:
    // Prints the final line (steps, time, the last logged metrics, the results) and writes
    // summary.json. Returns 0, the program's exit code.
    int finish(const MetricsWindowBase& window);
};

// The means of a few metrics over the steps since the last row of metrics.csv, whose columns
// are "epoch", the names, then `extra_columns`: values measured now and then (a test score),
// given to add() for the rows that have them and empty in the others. One per run, made
// before run.start(): its running sums are part of the run's checkpoint.
class MetricsWindowBase {
public:
    MetricsWindowBase(TrainingRun& run, std::vector<std::string> names, std::vector<std::string> extra_columns);
    virtual ~MetricsWindowBase() = default;
    const std::vector<std::string>& names() const { return names_; }
    // The means written in the last row; empty before the first.
    const std::vector<double>& last() const { return last_; }

protected:
    friend class TrainingRun;
    enum class Row { none, regular, end_of_run };  // end_of_run: due only because the run ends there
    Row row_due(std::int64_t step) const;
    void after_step(std::int64_t step, const std::vector<double>& step_values, const std::vector<double>& means,
                    const std::vector<std::pair<std::string, double>>& extra);
    // The running sums to and from `saved_sums_` and `saved_count_`, which the checkpoint holds.
    virtual void store() = 0;
    virtual void restore() = 0;
    void open_log();  // by run.start(), after a resume

    TrainingRun& run_;
    std::vector<std::string> names_, extra_columns_;
    std::vector<double> last_;
    std::vector<double> saved_sums_;
    std::int64_t saved_count_ = 0;
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
        add(step, std::vector<Sum>(values), extra);
    }
    // The same for values whose number the program knows only at run time (one per name).
    void add(std::int64_t step, const std::vector<Sum>& values,
             const std::vector<std::pair<std::string, double>>& extra = {}) {
        EMBER_CHECK(values.size() == sums_.size(), "MetricsWindow::add", "expected ", sums_.size(), " values, got ",
                    values.size());
        std::vector<double> now;
        std::size_t i = 0;
        for (const Sum v : values) sums_[i++] += v, now.push_back(static_cast<double>(v));
        ++count_;
        std::vector<double> means;
        const Row row = row_due(step);
        if (row != Row::none) {
            for (const Sum s : sums_) means.push_back(static_cast<double>(s / static_cast<Sum>(count_)));
            // A row due only because the run ends here keeps the sums: a run resumed from
            // this step carries on with them, as the longer run would have.
            if (row == Row::regular) std::fill(sums_.begin(), sums_.end(), Sum(0)), count_ = 0;
        }
        after_step(step, now, means, extra);
    }

private:
    void store() override {
        for (std::size_t i = 0; i < sums_.size(); ++i) saved_sums_[i] = static_cast<double>(sums_[i]);  // exact
        saved_count_ = count_;
    }
    void restore() override {
        for (std::size_t i = 0; i < sums_.size(); ++i) sums_[i] = static_cast<Sum>(saved_sums_[i]);
        count_ = saved_count_;
    }

    std::vector<Sum> sums_;
    std::int64_t count_ = 0;
};

}  // namespace ember_examples
