// ember::compiled: the evaluation of generators (eval/: Fréchet distances, classifier
// losses), instantiated once for float and double. Not part of ember.hpp, but compiled here
// so that programs that include eval/ headers get them from the library too.
#include "ember/eval/classification.hpp"
#include "ember/eval/frechet.hpp"

namespace ember { EMBER_DEFINE_INSTANCES(EMBER_FRECHET_INSTANCES) }
namespace ember { EMBER_DEFINE_INSTANCES(EMBER_CLASSIFICATION_INSTANCES) }
