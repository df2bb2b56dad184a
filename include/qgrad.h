/* qgrad — quantization-aware training in C. The umbrella header. */
#ifndef QGRAD_H
#define QGRAD_H
#include "qgrad/autograd.h"
#endif
