/* qgrad — quantization-aware training in C. The umbrella header. */
#ifndef QGRAD_H
#define QGRAD_H
#include "qgrad/autograd.h"
#include "qgrad/nn.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"
#include "qgrad/quant.h"
#include "qgrad/data.h"
#include "qgrad/deploy.h"
#include "qgrad/ddp.h"
#endif
