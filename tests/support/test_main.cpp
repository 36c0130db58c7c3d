// doctest's main(), shared by every test executable.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <omp.h>

int main(int argc, char** argv) {
  // Tests change the OpenMP thread count (up to 5) to check that results do
  // not depend on it. LLVM's OpenMP runtime, the one the sanitizer build
  // links, keeps the team structures of a second growth of its thread pool
  // past the program's end, and LeakSanitizer reports them (seen when a test
  // at 3 threads was followed by one at 5). One region at kMostThreads
  // first grows the pool once, to a size no test exceeds; the thread count
  // the tests start from is left as it was.
  constexpr int kMostThreads = 8;
  const int saved = omp_get_max_threads();
  if (saved < kMostThreads) {
    omp_set_num_threads(kMostThreads);
#pragma omp parallel
    {
      (void)omp_get_thread_num();
    }
    omp_set_num_threads(saved);
  }
  return doctest::Context(argc, argv).run();
}
