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
/// load() reads and checks the whole file first (every registered name present, every
/// shape equal) and only then writes into the model, optimisers and counters: a file that
/// does not match leaves the run untouched.
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
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
    /// command line, the date ...; load() ignores it).
    void save(const std::filesystem::path& path, const std::map<std::string, std::string>& extra = {}) const;

    /// Restores everything registered from `path`; throws ember::Error (and changes nothing)
    /// when the file is unreadable or does not match.
    void load(const std::filesystem::path& path);

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
    save_safetensors(path, out, meta);
}

template <Real T>
void Checkpoint<T>::load(const std::filesystem::path& path) {
    const Safetensors<T> file = load_safetensors<T>(path);
    const std::string where = "load checkpoint " + path.string();
    auto tensor = [&](const std::string& name, const Shape& shape) -> const Tensor<T>& {
        const auto it = file.tensors.find(name);
        EMBER_CHECK(it != file.tensors.end(), where.c_str(), "no tensor '", name, "' (a checkpoint of another model?)");
        EMBER_CHECK(it->second.shape() == shape, where.c_str(), "'", name, "' has shape ", it->second.shape().str(),
                    " but the model's is ", shape.str());
        return it->second;
    };
    auto meta = [&](const std::string& key) -> const std::string& {
        const auto it = file.metadata.find(key);
        EMBER_CHECK(it != file.metadata.end(), where.c_str(), "no metadata '", key, "'");
        return it->second;
    };

    // 1. Check and collect everything.
    std::vector<std::function<void()>> writes;
    for (const auto& [name, dst] : tensors_) {
        const Tensor<T>& src = tensor(name, dst.shape());
        writes.push_back([dst = dst, src] { dst.copy_from(src.contiguous()); });
    }
    for (const auto& o : optimizers_) {
        const double lr = parse<double>(meta(o.prefix + ".lr"), where, o.prefix + ".lr");
        std::vector<ParamState<T>> states(o.names.size());
        for (std::size_t i = 0; i < o.names.size(); ++i) {
            states[i].step = parse<std::int64_t>(meta(o.names[i] + ".step"), where, o.names[i] + ".step");
            const std::string stem = o.names[i] + ".";
            const Shape& shape = o.opt->params()[i].shape();
            for (const auto& [name, t] : file.tensors) {
                if (!name.starts_with(stem)) continue;
                const std::string key = name.substr(stem.size());
                if (key.find('.') != std::string::npos) continue;  // a deeper name, not a state key
                states[i].set(key, tensor(name, shape).contiguous().clone());
            }
        }
        Optimizer<T>* opt = o.opt;
        writes.push_back([opt, lr, states = std::move(states)]() mutable {
            opt->set_lr(lr);
            opt->state() = std::move(states);
        });
    }
    for (const auto& [key, g] : generators_) {
        const auto seed = parse<std::uint64_t>(meta(key + ".seed"), where, key + ".seed");
        const auto offset = parse<std::uint64_t>(meta(key + ".offset"), where, key + ".offset");
        Generator* gen = g;
        writes.push_back([gen, seed, offset] {
            *gen = Generator(seed);
            gen->set_offset(offset);
        });
    }
    for (const auto& [key, v] : integers_) {
        const auto value = parse<std::int64_t>(meta(key), where, key);
        writes.push_back([v = v, value] { *v = value; });
    }
    for (const auto& [key, v] : doubles_) {
        const auto value = parse<double>(meta(key), where, key);
        writes.push_back([v = v, value] { *v = value; });
    }
    // 2. Apply.
    NoGrad no_grad;
    for (auto& w : writes) w();
}

// What ember::compiled instantiates for float and double (core/instances.hpp).
#define EMBER_CHECKPOINT_INSTANCES(X, T) \
    X template class Checkpoint<T>;
EMBER_EXTERN_INSTANCES(EMBER_CHECKPOINT_INSTANCES)

}  // namespace ember
