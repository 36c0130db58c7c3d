// Measured FP32 peak of this machine: the FMA-throughput probe that every
// benchmark's "% of peak" column divides by.
#pragma once

namespace crfseg::bench {

// GFLOP/s of a loop of independent FMAs on all OpenMP threads: AVX2+FMA
// (12 accumulators of 8 lanes, enough to cover 2 pipes x 4-cycle latency)
// when the CPU has it, else the portable loop the compiler vectorises.
// Median of 5 runs of ~20 ms each, computed once and cached.
double measured_peak_gflops();

}  // namespace crfseg::bench
