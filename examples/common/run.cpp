// The examples' shared plumbing (common/run.hpp), compiled once for all of them.
#include "run.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>

#include <ember/io/atomic_file.hpp>
#include <ember/io/safetensors.hpp>

#include "quality.hpp"

namespace ember_examples {

// ---- Fact -----------------------------------------------------------------------------------

Fact::Fact(std::string name, double value) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", value);
    text = std::move(name) + " " + buf;
}
Fact::Fact(std::string name, const std::string& value) : text(std::move(name) + " " + value) {}
Fact::Fact(std::string name, const char* value) : text(std::move(name) + " " + value) {}

// ---- TrainingRun ----------------------------------------------------------------------------

struct TrainingRun::Report {
    std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
    std::int64_t start_step = 0;
    std::vector<std::pair<std::string, double>> results;
    std::vector<std::pair<std::string, SampleQuality>> quality;
};

namespace {
std::int64_t run_length(const ExampleOptions& o, const RunShape& s) {
    EMBER_CHECK(s.batches_per_step > 0 && s.log_every > 0, "TrainingRun",
                "batches per step and log_every must be positive, got ", s.batches_per_step, " and ", s.log_every);
    EMBER_CHECK(s.batches_per_epoch >= s.batches_per_step, o.name.c_str(), "--batch ", o.batch, ": a pass over the ",
                o.dataset, " training set holds ", s.batches_per_epoch, " whole batch", s.batches_per_epoch == 1 ? "" : "es",
                " of that size, and a training step reads ", s.batches_per_step, ": choose a smaller --batch");
    return o.iters > 0 ? o.iters : std::int64_t{o.epochs} * s.batches_per_epoch / s.batches_per_step;
}

// "AMD EPYC (family 25, model 1, AVX2)": the model name alone does not tell the CPUs apart.
std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::map<std::string, std::string> field;
    for (std::string line; std::getline(in, line) && !line.empty();) {
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        const auto key_end = line.find_last_not_of(" \t", colon - 1);
        const auto value = line.find_first_not_of(' ', colon + 1);
        field[line.substr(0, key_end + 1)] = value == std::string::npos ? "" : line.substr(value);
    }
    if (!field.count("model name")) return "unknown";
    const std::string& flags = field["flags"];
    const char* simd = flags.find("avx512f") != std::string::npos ? "AVX-512"
                       : flags.find("avx2") != std::string::npos  ? "AVX2"
                                                                   : "no AVX2";
    return field["model name"] + " (family " + field["cpu family"] + ", model " + field["model"] + ", " + simd + ")";
}

std::string utc_now() {
    const std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// JSON text of a string and of a number (null where JSON has no number).
std::string json(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\', out += c;
        else if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
        } else out += c;
    }
    return out + "\"";
}
std::string json(double v) { return std::isfinite(v) ? ember::MetricsLog::format_value(v) : "null"; }

std::string json_object(const std::vector<std::pair<std::string, std::string>>& fields, const std::string& indent) {
    std::string s = "{";
    for (std::size_t i = 0; i < fields.size(); ++i)
        s += (i ? ",\n" : "\n") + indent + "  " + json(fields[i].first) + ": " + fields[i].second;
    return s + (fields.empty() ? "}" : "\n" + indent + "}");
}
// summary.json, with the quality entries already in JSON.
void write_summary_file(const ExampleOptions& o, const RunSummary& s,
                        const std::vector<std::pair<std::string, std::string>>& quality) {
    std::vector<std::pair<std::string, std::string>> metrics, results;
    for (const auto& [name, value] : s.metrics) metrics.emplace_back(name, json(value));
    for (const auto& [name, value] : s.results) results.emplace_back(name, json(value));
    const std::string summary =
        json_object({{"example", json(o.name)},
                     {"command", json(o.command)},
                     {"dataset", json(o.dataset)},
                     {"finished_utc", json(utc_now())},
                     {"cpu", json(cpu_model())},
                     {"threads", std::to_string(s.threads)},
                     {"compiler", json(std::string("g++ ") + __VERSION__)},
                     {"steps", std::to_string(s.steps)},
                     {"steps_this_run", std::to_string(s.steps_this_run)},
                     {"seconds", json(s.seconds)},
                     {"metrics", json_object(metrics, "  ")},
                     {"results", json_object(results, "  ")},
                     {"quality", json_object(quality, "  ")}},
                    "") +
        "\n";
    ember::write_file_atomic(std::filesystem::path(o.out) / "summary.json",
                             [&](ember::AtomicWriter& w) { w.write(summary); }, "summary.json");
}
}  // namespace

TrainingRun::TrainingRun(ExampleOptions& o, RunShape s)
    : options(o),
      out((std::filesystem::create_directories(o.out), o.out)),
      threads(use_threads(o)),
      total(run_length(o, s)),
      shape(s),
      report_(std::make_unique<Report>()) {
    same_on_resume("--lr", ember::MetricsLog::format_value(o.lr));  // shortest text that reads back exactly
    same_on_resume("--batch", std::to_string(o.batch));
    same_on_resume("--seed", std::to_string(o.seed));
}

TrainingRun& TrainingRun::same_on_resume(const std::string& flag, const std::string& value) {
    EMBER_CHECK(!started_, "TrainingRun::same_on_resume", "call it before start(), which checks the flags");
    same_on_resume_.emplace_back(flag, value);
    return *this;
}

TrainingRun::~TrainingRun() = default;

void TrainingRun::start(std::initializer_list<Fact> facts) {
    EMBER_CHECK(!started_, "TrainingRun::start", "called twice");
    started_ = true;
    if (options.resume) {  // every process of a data-parallel job reads the same file
        const std::filesystem::path path = out / "checkpoint.safetensors";
        EMBER_CHECK(std::filesystem::exists(path), options.name.c_str(), "--resume: no checkpoint at ", path.string());
        const std::map<std::string, std::string> recorded = ember::load_safetensors<float>(path).metadata;
        for (const auto& [flag, value] : same_on_resume_) {
            const auto it = recorded.find(flag);
            EMBER_CHECK(it != recorded.end(), options.name.c_str(), "--resume: ", path.string(), " does not record the ",
                        flag, " of its run, so this run cannot be checked to continue it");
            EMBER_CHECK(it->second == value, options.name.c_str(), "--resume with ", flag, " ", value,
                        ", but the checkpoint's run has ", flag, " ", it->second, ": a resumed run continues that run (give the same ",
                        flag, ", or start a new run with another --out)");
        }
        checkpoint.load(path);
        checkpoint_step_ = step;
        if (window_) window_->restore();
        if (shape.reports) std::printf("resumed from %s at step %lld\n", path.c_str(), static_cast<long long>(step));
    }
    if (window_) window_->open_log();
    report_->start_step = step;
    if (!shape.reports) return;
    progress_.emplace(total, ember::ProgressOptions{.label = options.name, .start_step = step,
                                                    .every_steps = shape.progress_every});
    std::string line = options.name + ": " + options.dataset;
    for (const Fact& f : facts) line += "; " + f.text;
    std::printf("%s; batch %lld, lr %g, %lld steps (%lld per epoch), seed %llu, %d thread%s\n", line.c_str(),
                static_cast<long long>(options.batch), options.lr, static_cast<long long>(total),
                static_cast<long long>(std::max<std::int64_t>(1, shape.batches_per_epoch / shape.batches_per_step)),
                static_cast<unsigned long long>(options.seed), threads, threads == 1 ? "" : "s");
    std::fflush(stdout);  // before the progress line, which goes to stderr
}

std::int64_t TrainingRun::finish_step() { return ++step; }

bool TrainingRun::epoch_done() const { return step == total || epoch_boundary(); }

bool TrainingRun::epoch_boundary() const {
    const std::int64_t bpe = shape.batches_per_epoch, bps = shape.batches_per_step;
    return step > 0 && step * bps / bpe != (step - 1) * bps / bpe;
}

double TrainingRun::epoch() const {
    return static_cast<double>(step * shape.batches_per_step) / static_cast<double>(shape.batches_per_epoch);
}

void TrainingRun::save_checkpoint() {
    if (window_) window_->store();
    std::map<std::string, std::string> metadata{{"example", options.name}, {"dataset", options.dataset}};
    for (const auto& [flag, value] : same_on_resume_) metadata[flag] = value;
    if (shape.reports) {
        try {
            checkpoint.save(out / "checkpoint.safetensors", metadata);
        } catch (const ember::Error& e) {  // a parameter went NaN while every metric stayed finite
            const std::string kept = checkpoint_step_ < 0 ? "no checkpoint was saved"
                                                          : "the checkpoint of step " + std::to_string(checkpoint_step_) +
                                                                " is kept";
            ember::detail::fail(options.name.c_str(), "step ", step, ": ", e.what(), " (", kept, ")");
        }
    }
    checkpoint_step_ = step;
}

void TrainingRun::progress(const std::vector<std::string>& names, const std::vector<double>& values) {
    std::vector<std::pair<std::string, double>> shown;
    for (std::size_t i = 0; i < names.size(); ++i) shown.emplace_back(names[i], values[i]);
    if (progress_) progress_->update(step, shown);
}

void TrainingRun::quality(const ember::Tensor<float>& samples01, const std::string& label) {
    if (!shape.reports) return;
    ExampleOptions named = options;
    if (label != "samples") named.name += " (" + label + ")";
    if (const std::optional<SampleQuality> q = report_sample_quality(named, samples01))
        report_->quality.emplace_back(label, *q);
}

void TrainingRun::result(const std::string& name, double value) { report_->results.emplace_back(name, value); }

int TrainingRun::finish(const MetricsWindowBase& window) {
    if (!shape.reports) return 0;
    if (progress_) progress_->finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - report_->t0).count();
    std::string text;
    char buf[64];
    if (window.last().empty()) text = "; no training steps in this run";
    else {
        text = "; last logged window:";
        for (std::size_t i = 0; i < window.names().size(); ++i) {
            std::snprintf(buf, sizeof buf, "%s %s %.4g", i ? "," : "", window.names()[i].c_str(), window.last()[i]);
            text += buf;
        }
    }
    for (const auto& [name, value] : report_->results) {
        std::snprintf(buf, sizeof buf, "; %s %.4g", name.c_str(), value);
        text = text + buf;
    }
    std::printf("%s: %lld steps in %.1f s with %d thread%s%s; wrote %s\n", options.name.c_str(),
                static_cast<long long>(step), seconds, threads, threads == 1 ? "" : "s", text.c_str(), out.c_str());
    std::fflush(stdout);

    RunSummary summary{.seconds = seconds, .threads = threads, .steps = step, .steps_this_run = step - report_->start_step,
                       .metrics = {}, .results = report_->results};
    for (std::size_t i = 0; i < window.last().size(); ++i) summary.metrics.emplace_back(window.names()[i], window.last()[i]);
    std::vector<std::pair<std::string, std::string>> quality;
    for (const auto& [label, q] : report_->quality) {
        std::string histogram = "[";
        for (std::size_t k = 0; k < q.histogram.size(); ++k) histogram += (k ? ", " : "") + json(q.histogram[k]);
        quality.emplace_back(label, json_object({{"kl_to_uniform", json(q.kl_uniform)},
                                                 {"confidence", json(q.confidence)},
                                                 {"frechet", json(q.frechet)},
                                                 {"histogram", histogram + "]"}},
                                                "    "));
    }
    write_summary_file(options, summary, quality);
    return 0;
}

void write_summary(const ExampleOptions& o, const RunSummary& s) { write_summary_file(o, s, {}); }

// ---- MetricsWindow --------------------------------------------------------------------------

namespace {
std::vector<std::string> columns_of(const std::vector<std::string>& names, const std::vector<std::string>& extra) {
    std::vector<std::string> columns{"epoch"};
    columns.insert(columns.end(), names.begin(), names.end());
    columns.insert(columns.end(), extra.begin(), extra.end());
    return columns;
}
}  // namespace

MetricsWindowBase::MetricsWindowBase(TrainingRun& run, std::vector<std::string> names,
                                     std::vector<std::string> extra_columns)
    : run_(run), names_(std::move(names)), extra_columns_(std::move(extra_columns)), saved_sums_(names_.size(), 0.0) {
    EMBER_CHECK(!run.started_ && run.window_ == nullptr, "MetricsWindow",
                "make the run's one metrics window before run.start(), which restores it on --resume");
    run.window_ = this;
    run.checkpoint.add("metrics_window.count", saved_count_);
    for (std::size_t i = 0; i < names_.size(); ++i) run.checkpoint.add("metrics_window.sum." + names_[i], saved_sums_[i]);
}

void MetricsWindowBase::open_log() {
    if (!run_.shape.reports) return;
    // Rows up to the resumed step stay, but a row written there only because the earlier run
    // ended (its window then not empty) goes when this run takes more steps: it writes the
    // row the longer run would have written instead.
    const bool replace_last_row = saved_count_ > 0 && run_.step < run_.total;
    const std::int64_t first_new_row = replace_last_row ? run_.step : run_.step + 1;
    log_.emplace(run_.out / "metrics.csv", run_.step == 0 ? 0 : first_new_row, columns_of(names_, extra_columns_));
}

MetricsWindowBase::Row MetricsWindowBase::row_due(std::int64_t step) const {
    if (step % run_.shape.log_every == 0 || run_.epoch_boundary()) return Row::regular;
    return step == run_.total ? Row::end_of_run : Row::none;
}

void MetricsWindowBase::after_step(std::int64_t step, const std::vector<double>& step_values,
                                   const std::vector<double>& means,
                                   const std::vector<std::pair<std::string, double>>& extra) {
    EMBER_CHECK(step == run_.step, "MetricsWindow::add", "step ", step, " is not the run's step ", run_.step);
    for (std::size_t i = 0; i < names_.size(); ++i) {
        if (std::isfinite(step_values[i])) continue;
        const std::string kept = run_.checkpoint_step_ < 0
                                     ? "no checkpoint was saved"
                                     : "the checkpoint of step " + std::to_string(run_.checkpoint_step_) + " is kept";
        ember::detail::fail(run_.options.name.c_str(), "step ", step, ": ", names_[i], " = ",
                            ember::MetricsLog::format_value(step_values[i]),
                            ": the training diverged; stopped before writing anything of this step (", kept,
                            "); try a smaller --lr");
    }
    run_.progress(names_, step_values);
    if (means.empty()) return;
    last_ = means;
    if (!log_) return;
    std::vector<std::pair<std::string, double>> row{{"epoch", run_.epoch()}};
    for (std::size_t i = 0; i < names_.size(); ++i) row.emplace_back(names_[i], means[i]);
    row.insert(row.end(), extra.begin(), extra.end());
    log_->write(step, row);
}

}  // namespace ember_examples
