#include "util_private.h"

const char *kraken_version(void) { return KRAKEN_VERSION_STRING; }

unsigned kraken_version_number(void) { return KRAKEN_VERSION_NUMBER; }
