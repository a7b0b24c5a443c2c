/* SPDX-License-Identifier: BSD-3-Clause */
/* testpower as a loadable module: the one exported entry point. */
#include "testpower.h"

const kraken_module_desc *kraken_module_entry(void);

const kraken_module_desc *kraken_module_entry(void)
{
    return testpower_desc();
}
