// Catch2 v2 entry point for the module's Unbound-free unit tests
// (build/bin/dnsfw_module_tests).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
