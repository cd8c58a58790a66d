// ember::compiled: the functions that are not templates and that the headers define only
// for header-only use (EMBER_HEADER_DEFINITIONS in core/instances.hpp), compiled once here.
#define EMBER_OUT_OF_LINE_SOURCE
#include "ember/eval/frechet.hpp"
#include "ember/info/vae.hpp"
#include "ember/sample/diagnostics.hpp"
