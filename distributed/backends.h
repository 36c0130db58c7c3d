// Internal: factories of the optional communicators (communicator.cpp picks
// one). Each is declared only when its backend is compiled in.
#pragma once

#include <memory>

#include "distributed/communicator.h"

namespace crfseg::dist {

#ifdef CRFSEG_WITH_MPI
// MPI_COMM_WORLD; initialises MPI on first use (finalised at exit).
std::unique_ptr<Communicator> make_mpi_communicator();
// MPI_Abort(MPI_COMM_WORLD, code) when MPI is initialised with > 1 rank.
void mpi_abort_world(int code);
#endif

#ifdef CRFSEG_WITH_NCCL
// One NCCL communicator over MPI_COMM_WORLD's ranks, device = local rank mod
// the number of visible GPUs (DistributedError when two ranks share a GPU).
std::unique_ptr<Communicator> make_nccl_communicator();
#endif

}  // namespace crfseg::dist
