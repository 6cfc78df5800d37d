// Every differentiable op, one header per family.
#pragma once
#include "autograd/autocast.h"
#include "autograd/functions/cast.h"
#include "autograd/functions/conv.h"
#include "autograd/functions/elementwise.h"
#include "autograd/functions/linear.h"
#include "autograd/functions/norm.h"
#include "autograd/functions/pool.h"
#include "autograd/functions/random.h"
#include "autograd/functions/reduce.h"
#include "autograd/functions/shape_ops.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
