// crfseg umbrella header for users: the tensor library, raw ops,
// differentiable ops and autograd. Library code includes what it uses instead.
#pragma once

#include "autograd/autograd_meta.h"
#include "autograd/engine.h"
#include "autograd/functions.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "tensor/factory.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
