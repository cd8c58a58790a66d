#pragma once
/// \file
/// Checkpoints: everything a training run needs to continue bit-identically, in one
/// safetensors file that PyTorch can read.
///
///     Checkpoint<float> ckpt;
///     ckpt.add("gen", G).add("disc", D)                 // tensors "gen.0.weight", ...
///         .add("opt_gen", opt_G, G)                     // "opt_gen.0.weight.exp_avg", ...
///         .add("rng", gen).add("step", step);           // metadata
///     ckpt.save(out / "checkpoint.safetensors");        // atomic: the old file survives a crash
///     if (resume) ckpt.load(out / "checkpoint.safetensors");
///
/// What is stored:
///  - modules: their state_dict() (parameters and buffers) under "<prefix>.<name>";
///  - optimisers: each parameter's state tensors under "<prefix>.<parameter name>.<key>"
///    (PyTorch's keys: exp_avg, exp_avg_sq, momentum_buffer, ...), and in the metadata its
///    step count ("<prefix>.<parameter name>.step") and the learning rate ("<prefix>.lr");
///  - random generators: seed and stream offset ("<key>.seed", "<key>.offset");
///  - integers and doubles (step, epoch, schedule state ...) in the metadata, doubles in
///    shortest round-trip form so they come back exactly.
///
/// Loading is all-or-nothing and strict by default. load() reads the whole file (verifying
/// its CRC-32s, ember/io/safetensors.hpp) and checks everything before it writes into the
/// model, optimisers and counters: every registered name present with its shape, no tensor
/// in the file that nothing registered claims, each optimiser's state keys exactly those it
/// keeps (Optimizer::state_keys), the learning rate finite and >= 0, and every value finite.
/// A file that fails any check leaves the run exactly as it was. CheckpointLoadOptions
/// relaxes the key matching (strict = false, as PyTorch's load_state_dict(strict=False))
/// or accepts non-finite values. save() refuses non-finite values, so that a diverged run
/// cannot overwrite its last good checkpoint.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "ember/core/instances.hpp"
#include "ember/core/random.hpp"
#include "ember/io/safetensors.hpp"
#include "ember/nn/module.hpp"
#include "ember/optim/optimizer.hpp"

namespace ember {

/// How Checkpoint::load treats a file that does not match the registered state exactly.
struct CheckpointLoadOptions {
    /// true: a registered tensor or metadata entry missing from the file, a tensor of the
    /// file that nothing registered claims, or an optimiser state key the optimiser does not
    /// keep, is an error naming them all. false: what matches is loaded, the rest keeps its
    /// value or is ignored, and the returned report lists both.
    bool strict = true;
    /// Accept NaN and infinite values in the tensors (by default they are an error: a run
    /// resumed from them is lost at its first step).
    bool allow_non_finite = false;
};

/// What a non-strict Checkpoint::load left alone (empty after a strict load).
struct CheckpointLoadReport {
    std::vector<std::string> missing;     ///< registered names the file lacks; they kept their values
    std::vector<std::string> unexpected;  ///< names in the file that nothing registered; ignored
};

/// The state of a training run, registered piece by piece and saved to or loaded from one
/// safetensors file (see the file description).
template <Real T>
class Checkpoint {
public:
    /// A module's parameters and buffers under "<prefix>.".
    Checkpoint& add(const std::string& prefix, nn::Module<T>& module) {
        check_key(prefix);
        for (auto& [name, t] : module.state_dict()) tensors_.push_back({prefix + "." + name, t});
        return *this;
    }

    /// An optimiser's state. Its parameters are named after `names_from` (the module they
    /// belong to); every parameter of the optimiser must be one of that module's.
    Checkpoint& add(const std::string& prefix, Optimizer<T>& opt, const nn::Module<T>& names_from) {
        check_key(prefix);
        std::vector<std::string> names;
        const auto named = names_from.named_parameters();
        for (std::size_t i = 0; i < opt.params().size(); ++i) {
            std::string found;
            for (const auto& [name, p] : named)
                if (p.impl() == opt.params()[i].impl()) found = name;
            EMBER_CHECK(!found.empty(), "Checkpoint", "parameter ", i, " of optimiser '", prefix,
                        "' does not belong to the module given for its names (", names_from.describe(), ")");
            names.push_back(prefix + "." + found);
        }
        optimizers_.push_back({prefix, &opt, std::move(names)});
        return *this;
    }

    /// A generator's seed and stream offset, as metadata "<key>.seed" and "<key>.offset".
    Checkpoint& add(const std::string& key, Generator& gen) {
        check_key(key);
        generators_.push_back({key, &gen});
        return *this;
    }
    /// An integer counter (step, epoch ...), as metadata "<key>".
    Checkpoint& add(const std::string& key, std::int64_t& value) {
        check_key(key);
        integers_.push_back({key, &value});
        return *this;
    }
    /// A double (a schedule's value, a best score ...), as metadata "<key>", exactly.
    Checkpoint& add(const std::string& key, double& value) {
        check_key(key);
        doubles_.push_back({key, &value});
        return *this;
    }

    /// Writes the file atomically, with `extra` as additional metadata (for people: the
    /// command line, the date ...; load() ignores it). Throws ember::Error, writing nothing,
    /// if a tensor holds a NaN or an infinity.
    void save(const std::filesystem::path& path, const std::map<std::string, std::string>& extra = {}) const;

    /// Restores everything registered from `path`; throws ember::Error (and changes nothing)
    /// when the file is unreadable, damaged or does not match (see the file description).
    CheckpointLoadReport load(const std::filesystem::path& path, const CheckpointLoadOptions& options = {});

private:
    struct OptimizerEntry {
        std::string prefix;
        Optimizer<T>* opt;
        std::vector<std::string> names;  // per parameter, "<prefix>.<module's name>"
    };

    void check_key(const std::string& key) {
        EMBER_CHECK(!key.empty(), "Checkpoint", "names must be non-empty");
        EMBER_CHECK(!keys_.count(key), "Checkpoint", "'", key, "' is added twice");
        keys_.insert(key);
    }
    static std::string format_double(double v) {
        char buf[64];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that reads back exactly
        return std::string(buf, r.ptr);
    }
    // Throws unless every value of `t` is finite, naming the tensor and the first bad value.
    static void check_finite(const Tensor<T>& t, const std::string& op, const std::string& name, const char* advice) {
        const Tensor<T> c = t.contiguous();
        const T* p = c.data();
        const Index n = c.numel();
        Index bad = 0, first = -1;
        for (Index i = 0; i < n; ++i)
            if (!std::isfinite(p[i])) {
                if (bad++ == 0) first = i;
            }
        EMBER_CHECK(bad == 0, op.c_str(), "tensor '", name, "' holds ", bad, " non-finite value", bad == 1 ? "" : "s",
                    " of ", n, " (element ", first, " is ", first >= 0 ? p[first] : T(0), "); ", advice);
    }
    template <class N>
    static N parse(const std::string& s, const std::string& where, const std::string& key) {
        N v{};
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        EMBER_CHECK(r.ec == std::errc() && r.ptr == s.data() + s.size(), where.c_str(), "metadata '", key, "' = '", s,
                    "' is not a valid number");
        return v;
    }

    std::set<std::string> keys_;
    std::vector<std::pair<std::string, Tensor<T>>> tensors_;
    std::vector<OptimizerEntry> optimizers_;
    std::vector<std::pair<std::string, Generator*>> generators_;
    std::vector<std::pair<std::string, std::int64_t*>> integers_;
    std::vector<std::pair<std::string, double*>> doubles_;
};

template <Real T>
void Checkpoint<T>::save(const std::filesystem::path& path, const std::map<std::string, std::string>& extra) const {
    std::vector<std::pair<std::string, Tensor<T>>> out;
    std::map<std::string, std::string> meta = extra;
    meta["format"] = "ember-checkpoint-1";
    for (const auto& [name, t] : tensors_) out.emplace_back(name, t);
    for (const auto& o : optimizers_) {
        meta[o.prefix + ".lr"] = format_double(o.opt->lr());
        for (std::size_t i = 0; i < o.names.size(); ++i) {
            const ParamState<T>& s = o.opt->state()[i];
            meta[o.names[i] + ".step"] = std::to_string(s.step);
            for (const auto& [key, t] : s.buffers) out.emplace_back(o.names[i] + "." + key, t);
        }
    }
    for (const auto& [key, g] : generators_) {
        meta[key + ".seed"] = std::to_string(g->seed());
        meta[key + ".offset"] = std::to_string(g->offset());
    }
    for (const auto& [key, v] : integers_) meta[key] = std::to_string(*v);
    for (const auto& [key, v] : doubles_) meta[key] = format_double(*v);
    const std::string op = "Checkpoint::save " + path.string();
    for (const auto& [name, t] : out)
        check_finite(t, op, name, "refusing to replace the checkpoint with a diverged state");
    save_safetensors(path, out, meta);
}

template <Real T>
CheckpointLoadReport Checkpoint<T>::load(const std::filesystem::path& path, const CheckpointLoadOptions& options) {
    const Safetensors<T> file = load_safetensors<T>(path);
    const std::string where = "load checkpoint " + path.string();
    CheckpointLoadReport report;
    std::set<std::string> claimed;  // the file's tensors that something registered takes
    const char* advice = "load with allow_non_finite to accept it (the run would diverge at once)";

    // The tensor `name` of shape `shape`, or nullptr (and noted as missing) if the file lacks it.
    auto tensor = [&](const std::string& name, const Shape& shape) -> const Tensor<T>* {
        const auto it = file.tensors.find(name);
        if (it == file.tensors.end()) {
            report.missing.push_back(name);
            return nullptr;
        }
        claimed.insert(name);
        EMBER_CHECK(it->second.shape() == shape, where.c_str(), "'", name, "' has shape ", it->second.shape().str(),
                    " but the model's is ", shape.str());
        if (!options.allow_non_finite) check_finite(it->second, where, name, advice);
        return &it->second;
    };
    auto meta = [&](const std::string& key) -> const std::string* {
        const auto it = file.metadata.find(key);
        if (it == file.metadata.end()) {
            report.missing.push_back(key);
            return nullptr;
        }
        return &it->second;
    };

    // 1. Check and collect everything; nothing is written until all of it has passed.
    std::vector<std::function<void()>> writes;
    for (const auto& [name, dst] : tensors_)
        if (const Tensor<T>* src = tensor(name, dst.shape()))
            writes.push_back([dst = dst, src = *src] { dst.copy_from(src.contiguous()); });
    for (const auto& o : optimizers_) {
        const std::vector<std::string> keys = o.opt->state_keys();
        const std::string* lr_text = meta(o.prefix + ".lr");
        std::optional<double> lr;
        if (lr_text) {
            lr = parse<double>(*lr_text, where, o.prefix + ".lr");
            EMBER_CHECK(std::isfinite(*lr) && *lr >= 0, where.c_str(), "metadata '", o.prefix, ".lr' = ", *lr_text,
                        " is not a learning rate (a finite number >= 0)");
        }
        std::vector<ParamState<T>> states = o.opt->state();  // kept where the file has nothing
        for (std::size_t i = 0; i < o.names.size(); ++i) {
            const std::string* step_text = meta(o.names[i] + ".step");
            if (!step_text) continue;
            ParamState<T> state;
            state.step = parse<std::int64_t>(*step_text, where, o.names[i] + ".step");
            EMBER_CHECK(state.step >= 0, where.c_str(), "metadata '", o.names[i], ".step' = ", state.step,
                        " is negative");
            const std::string stem = o.names[i] + ".";
            const Shape& shape = o.opt->params()[i].shape();
            for (const auto& [name, t] : file.tensors) {
                if (!name.starts_with(stem)) continue;
                const std::string key = name.substr(stem.size());
                if (key.find('.') != std::string::npos) continue;  // a deeper name, not a state key
                if (std::find(keys.begin(), keys.end(), key) == keys.end()) continue;  // unexpected, below
                if (const Tensor<T>* src = tensor(name, shape)) state.set(key, src->contiguous().clone());
            }
            // After its first update a parameter has every state tensor of its optimiser.
            if (state.step > 0)
                for (const std::string& key : keys)
                    if (!state.find(key) && !file.tensors.count(stem + key)) report.missing.push_back(stem + key);
            states[i] = std::move(state);
        }
        Optimizer<T>* opt = o.opt;
        writes.push_back([opt, lr, states = std::move(states)]() mutable {
            if (lr) opt->set_lr(*lr);
            opt->state() = std::move(states);
        });
    }
    for (const auto& [key, g] : generators_) {
        const std::string* seed_text = meta(key + ".seed");
        const std::string* offset_text = meta(key + ".offset");
        if (!seed_text || !offset_text) continue;
        const auto seed = parse<std::uint64_t>(*seed_text, where, key + ".seed");
        const auto offset = parse<std::uint64_t>(*offset_text, where, key + ".offset");
        Generator* gen = g;
        writes.push_back([gen, seed, offset] {
            *gen = Generator(seed);
            gen->set_offset(offset);
        });
    }
    for (const auto& [key, v] : integers_)
        if (const std::string* text = meta(key)) writes.push_back([v = v, value = parse<std::int64_t>(*text, where, key)] { *v = value; });
    for (const auto& [key, v] : doubles_)
        if (const std::string* text = meta(key)) writes.push_back([v = v, value = parse<double>(*text, where, key)] { *v = value; });
    for (const auto& [name, t] : file.tensors)
        if (!claimed.count(name)) report.unexpected.push_back(name);

    if (options.strict && (!report.missing.empty() || !report.unexpected.empty())) {
        auto list = [](const std::vector<std::string>& names) {
            std::string s;
            for (std::size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", " : "") + ("'" + names[i] + "'");
            if (names.size() > 8) s += " and " + std::to_string(names.size() - 8) + " more";
            return s;
        };
        std::string what;
        if (!report.missing.empty()) what += "missing " + list(report.missing);
        if (!report.unexpected.empty())
            what += (what.empty() ? "" : "; ") + ("not registered " + list(report.unexpected));
        detail::fail(where.c_str(), "the file does not match what is registered (a checkpoint of another model or "
                     "optimiser?): ", what, "; load with strict = false to restore only what matches");
    }
    // 2. Apply; nothing below can throw.
    NoGrad no_grad;
    for (auto& w : writes) w();
    return report;
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CHECKPOINT_INSTANCES(X, T) \
    X template class Checkpoint<T>;
EMBER_EXTERN_INSTANCES(EMBER_CHECKPOINT_INSTANCES)

}  // namespace ember
