// Catch2 main of dnsfw_xfrd_tests (every tests/unit/xfrd/*.cpp).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
