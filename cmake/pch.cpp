// Compiles the precompiled <ember/ember.hpp> that ember's own tests, examples and
// benchmarks share (ember_dev_target in CMakeLists.txt); it has no code of its own.
