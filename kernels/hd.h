// CRFSEG_HD marks a function compiled for both the host and a CUDA device
// (__host__ __device__ under nvcc, nothing under a plain C++ compiler), so
// one definition of a per-element rule serves the CPU loops and the CUDA
// kernels, and runs in CPU tests.
#pragma once

#ifdef __CUDACC__
#define CRFSEG_HD __host__ __device__
#else
#define CRFSEG_HD
#endif
