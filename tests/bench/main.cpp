// Google Benchmark entry point for dnsfw_bench (every tests/bench/*.cpp is
// linked into it; benchmark files must not define their own main).
#include <benchmark/benchmark.h>

BENCHMARK_MAIN();
