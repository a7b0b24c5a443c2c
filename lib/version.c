#include "internal.h"

const char *kraken_version(void) { return KRAKEN_VERSION_STRING; }

int kraken_version_number(void) { return KRAKEN_VERSION_NUMBER; }
