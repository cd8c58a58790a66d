// ember::compiled: every elementwise op applied to Vars, its derivative rule over Var and
// the graph node of the op on Var operands (autodiff/expr_node.hpp), for float. These are the
// steps of a recorded backward (create_graph); float and double are separate files so that
// the library's largest share compiles on two cores at once.
#include "ember/autodiff/expr_node.hpp"

namespace ember::expr {
EMBER_VAR_RULE_INSTANCES(, float)
}
