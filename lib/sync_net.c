/* sync_net.c: to be written */
#include "internal.h"
