/* sync_crypto.c: to be written */
#include "internal.h"
