// Measured FP32 peak of this machine: the FMA-throughput probe that every
// benchmark's "% of peak" column divides by.
#pragma once

namespace crfseg::bench {

// GFLOP/s of a loop of independent FMAs on all OpenMP threads: the best of
// AVX-512 (12 accumulators of 16 lanes), AVX2+FMA (12 of 8 lanes, enough to
// cover 2 pipes x 4-cycle latency) and the portable loop the compiler
// vectorises, over what the CPU has.
// Median of 5 runs of ~20 ms each, computed once and cached.
double measured_peak_gflops();

}  // namespace crfseg::bench
