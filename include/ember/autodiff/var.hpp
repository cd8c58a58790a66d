#pragma once
/// \file
/// Var<T>: a tensor that records the operations applied to it, for reverse-mode autodiff.
/// A Var is a shared handle (copies refer to the same node of the graph). Each recorded
/// operation owns a Node that knows its inputs and how to turn the output's gradient into
/// the inputs' gradients, written with the same public ops, so that gradients of gradients
/// come from the same code (see engine.hpp for the backward walk).
#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ember/autodiff/anomaly.hpp"
#include "ember/core/tensor.hpp"

namespace ember {

template <Real T>
class Var;
template <Real T>
struct Node;

// ---- grad mode ------------------------------------------------------------------------
namespace detail {
inline bool& grad_mode_flag() {
    thread_local bool enabled = true;
    return enabled;
}
}  // namespace detail

/// True unless a GradModeGuard (or NoGrad) on this thread turned recording off.
inline bool grad_enabled() { return detail::grad_mode_flag(); }

/// Scope in which operations are not recorded (like torch.no_grad()).
class GradModeGuard {
public:
    /// Sets grad mode on this thread to `enabled` until the guard is destroyed.
    explicit GradModeGuard(bool enabled) : previous_(detail::grad_mode_flag()) {
        detail::grad_mode_flag() = enabled;
    }
    ~GradModeGuard() { detail::grad_mode_flag() = previous_; }
    GradModeGuard(const GradModeGuard&) = delete;
    GradModeGuard& operator=(const GradModeGuard&) = delete;

private:
    bool previous_;
};
/// Scope in which operations are not recorded: `NoGrad guard;` is torch.no_grad().
struct NoGrad : GradModeGuard {
    NoGrad() : GradModeGuard(false) {}
};

// ---- graph storage --------------------------------------------------------------------
template <Real T>
/// The shared state behind a Var: its value, gradient, the node that produced it.
struct VarImpl {
    /// The value.
    Tensor<T> value;
    Tensor<T> grad;               ///< accumulated by backward() on leaves
    std::shared_ptr<Node<T>> fn;  ///< the operation that produced this value; null for leaves
    /// Whether backward() computes a gradient for this Var.
    bool requires_grad = false;

    /// Scratch state of one backward walk (engine.hpp).
    std::uint64_t walk = 0;
    /// Scratch state of one backward walk (engine.hpp).
    bool needed = false;
    /// Scratch state of one backward walk (engine.hpp).
    std::shared_ptr<VarImpl> pending;
};

/// The shared handle a Var holds; graph nodes refer to their inputs by it.
template <Real T>
using ImplPtr = std::shared_ptr<VarImpl<T>>;

namespace detail {
// The inputs of a node: up to four inline (nearly every op), more on the heap.
template <class P>
class InputList {
public:
    void push_back(P p) {
        if (size_ < kInline) inline_[size_] = std::move(p);
        else heap_.push_back(std::move(p));
        ++size_;
    }
    void reserve(std::size_t n) {
        if (n > kInline) heap_.reserve(n - kInline);
    }
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    P& operator[](std::size_t i) { return i < kInline ? inline_[i] : heap_[i - kInline]; }
    const P& operator[](std::size_t i) const { return i < kInline ? inline_[i] : heap_[i - kInline]; }
    std::size_t index_of(const P& p) const {
        for (std::size_t i = 0; i < size_; ++i)
            if ((*this)[i] == p) return i;
        return size_;
    }
    // Moves every element out through f, leaving the list empty.
    template <class F>
    void drain(F&& f) {
        for (std::size_t i = 0; i < size_; ++i) f(std::move((*this)[i]));
        heap_.clear();
        size_ = 0;
    }

private:
    static constexpr std::size_t kInline = 4;
    std::array<P, kInline> inline_{};
    std::vector<P> heap_;
    std::size_t size_ = 0;
};

// Releasing the last reference to a long chain would recurse once per node and overflow
// the stack (a 100k-node chain); instead inputs are dropped from an explicit work list.
template <Real T>
void drop_iteratively(InputList<ImplPtr<T>>& refs) {
    thread_local std::vector<ImplPtr<T>>* queue = nullptr;
    if (queue) {
        refs.drain([](ImplPtr<T>&& r) { queue->push_back(std::move(r)); });
        return;
    }
    // Inputs still referenced elsewhere are not the start of a chain: drop them directly.
    bool chain = false;
    for (std::size_t i = 0; i < refs.size(); ++i) chain = chain || refs[i].use_count() <= static_cast<long>(refs.size());
    if (!chain) {
        refs.drain([](ImplPtr<T>&& r) { r.reset(); });
        return;
    }
    std::vector<ImplPtr<T>> work;
    queue = &work;
    refs.drain([&](ImplPtr<T>&& r) { work.push_back(std::move(r)); });
    while (!work.empty()) {
        ImplPtr<T> last = std::move(work.back());
        work.pop_back();
        last.reset();  // may run ~Node of `last`, which appends to `work`
    }
    queue = nullptr;
}
}  // namespace detail

/// One recorded operation of the graph: its inputs and how its output's gradient becomes
/// theirs. record() makes one from a lambda; ExprNode is a fused elementwise expression.
template <Real T>
struct Node {
    detail::InputList<ImplPtr<T>> inputs;  ///< positional inputs of the operation
    /// True once release() has dropped the saved values; a second backward then fails.
    bool released = false;

    virtual ~Node() { detail::drop_iteratively(inputs); }
    /// The operation's name, as error messages and anomaly mode report it.
    virtual const char* name() const = 0;
    /// Gradients of the inputs (undefined Var where need[i] is false) given the output's
    /// gradient `g`. Runs with grad mode = create_graph, so recorded only when asked.
    virtual std::vector<Var<T>> backward(const Var<T>& g, std::span<const bool> need) = 0;
    /// Drops saved values and inputs after a backward pass that did not retain the graph.
    virtual void release() {
        released = true;
        detail::drop_iteratively(inputs);
    }

    /// Anomaly mode (anomaly.hpp), asked only once this node's backward has returned a
    /// non-finite gradient. Whether the forward values the backward reads are all finite
    /// (if not, the non-finite gradient may just propagate a non-finite leaf):
    [[gnu::cold]] virtual bool anomaly_inputs_finite() const {
        for (std::size_t i = 0; i < inputs.size(); ++i)
            if (!detail::all_finite(inputs[i]->value)) return false;
        return true;
    }
    /// A node made of several ops (a fused expression) names the one whose derivative turned
    /// finite values into a non-finite one, given the incoming gradient `g`, and says where.
    [[gnu::cold]] virtual bool anomaly_explain_backward(const Tensor<T>& /*g*/, std::string& /*op*/, std::string& /*detail*/) const {
        return false;
    }
};

/// Options of Var::backward.
struct BackwardOptions {
    /// Keep the graph's saved values, so that backward can run through it again.
    bool retain_graph = false;
};

/// A tensor that records the operations applied to it, for reverse-mode autodiff. Copies
/// refer to the same node of the graph.
template <Real T>
class Var {
public:
    /// The element type.
    using value_type = T;

    /// An undefined Var (defined() is false).
    Var() = default;
    /// A leaf holding `value`; backward() fills its grad() when `requires_grad` is true.
    explicit Var(Tensor<T> value, bool requires_grad = false) : p_(detail::make_small_shared<VarImpl<T>>()) {
        EMBER_CHECK(value.defined(), "Var", "cannot wrap an undefined tensor");
        p_->value = std::move(value);
        p_->requires_grad = requires_grad;
    }
    /// A Var sharing the given state.
    explicit Var(ImplPtr<T> impl) : p_(std::move(impl)) {}
    /// A constant rank-0 Var.
    static Var constant(T v) { return Var(Tensor<T>::scalar(v)); }

    /// Evaluates an expression template in one fused pass; records one graph node.
    template <expr::Expression E>
    Var(const E& e);  // NOLINT(google-explicit-constructor)

    /// False only for a default-constructed Var.
    bool defined() const { return p_ != nullptr; }
    /// The value.
    const Tensor<T>& value() const { return p_->value; }
    /// The gradient accumulated by backward(); undefined until then.
    const Tensor<T>& grad() const { return p_->grad; }
    /// Whether backward() computes a gradient for this Var.
    bool requires_grad() const { return p_->requires_grad; }
    /// Turns gradient tracking on or off for a leaf; returns *this.
    Var& set_requires_grad(bool r = true) {
        EMBER_CHECK(!p_->fn || r, "Var::set_requires_grad", "only leaves can stop requiring grad; use detach()");
        p_->requires_grad = r;
        return *this;
    }
    /// True for a Var that no recorded operation produced.
    bool is_leaf() const { return p_->fn == nullptr; }
    /// The shared state.
    const ImplPtr<T>& impl() const { return p_; }
    /// The operation that produced this Var; null for a leaf.
    const Node<T>* node() const { return p_->fn.get(); }

    /// The value's shape.
    const Shape& shape() const { return p_->value.shape(); }
    /// The value's rank.
    int rank() const { return p_->value.rank(); }
    /// Dimension `axis` of the value; negative axes count from the end.
    Index dim(int axis) const { return p_->value.dim(axis); }
    /// Number of elements.
    Index numel() const { return p_->value.numel(); }
    /// The value of a one-element Var.
    T item() const { return p_->value.item(); }

    /// Same value, cut from the graph (gradients stop here).
    Var detach() const { return Var(p_->value); }
    /// Clears the gradient (grad() becomes undefined, as PyTorch's set_to_none).
    void zero_grad() const { p_->grad = Tensor<T>(); }
    /// Replaces the gradient with `g`.
    void set_grad(Tensor<T> g) const { p_->grad = std::move(g); }

    /// Accumulates d(this)/d(leaf) into every leaf's grad(); `this` must be a scalar.
    void backward(BackwardOptions opts = {}) const;

private:
    ImplPtr<T> p_;
};

namespace detail {
// A node whose backward is a callable `(const Var& g, span<const bool> need) -> vector<Var>`
// capturing what it saved; the callable is dropped on release.
template <Real T, class Backward>
struct FnNode final : Node<T> {
    const char* op_name;
    std::optional<Backward> fn;
    FnNode(const char* n, Backward f) : op_name(n), fn(std::move(f)) {}
    ~FnNode() override { fn.reset(); }  // saved Vars go first; inputs then drop iteratively
    const char* name() const override { return op_name; }
    std::vector<Var<T>> backward(const Var<T>& g, std::span<const bool> need) override { return (*fn)(g, need); }
    void release() override {
        fn.reset();
        Node<T>::release();
    }
};

// Anomaly mode: the output `out` of the recorded op `name` must be finite unless one of
// its inputs is not (then the value propagates a non-finite leaf; see anomaly.hpp).
template <Real T>
[[gnu::noinline, gnu::cold]] void anomaly_check_recorded(const char* name, const Tensor<T>& out, std::initializer_list<Var<T>> inputs) {
    const Index i = first_non_finite(out);
    if (i < 0) return;
    for (const Var<T>& v : inputs)
        if (!all_finite(v.value())) return;
    std::string shapes;
    for (const Var<T>& v : inputs) shapes += (shapes.empty() ? "" : ", ") + v.shape().str();
    fail("detect_anomaly", "forward of '", name, "' produced ", anomaly_kind(out.flat(i)), ": output of shape ",
         out.shape().str(), ", first non-finite ", anomaly_element(out, i), "; input shapes: ", shapes,
         anomaly_context_suffix());
}
}  // namespace detail

/// Wraps `value` as the output of operation `name` applied to `inputs`. The graph is
/// recorded only when grad mode is on and some input requires grad. In anomaly mode the
/// value is checked for NaN/Inf (anomaly.hpp).
template <Real T, class Backward>
Var<T> record(const char* name, Tensor<T> value, std::initializer_list<Var<T>> inputs, Backward&& backward) {
    Var<T> out(std::move(value));
    if (!grad_enabled()) return out;
    bool any = false;
    for (const Var<T>& v : inputs) any = any || v.requires_grad();
    if (!any) return out;
    auto node = detail::make_small_shared<detail::FnNode<T, std::decay_t<Backward>>>(name, std::forward<Backward>(backward));
    node->inputs.reserve(inputs.size());
    for (const Var<T>& v : inputs) node->inputs.push_back(v.impl());
    out.impl()->fn = std::move(node);
    out.impl()->requires_grad = true;
    if (anomaly_enabled()) [[unlikely]]
        detail::anomaly_check_recorded(name, out.value(), inputs);
    return out;
}

}  // namespace ember
