// An empty program that includes everything: the cost of parsing <ember/ember.hpp>.
#include <ember/ember.hpp>

int main() { return 0; }
