/* schema_builtin.c: to be written */
#include "internal.h"
