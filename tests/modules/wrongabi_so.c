/* SPDX-License-Identifier: BSD-3-Clause */
/* A module built for another module ABI: the loader must refuse it. */
#include <kraken/module.h>

const kraken_module_desc *kraken_module_entry(void);

static const kraken_module_desc desc = {.abi_version = KRAKEN_MODULE_ABI_VERSION + 1,
                                        .name = "wrongabi"};

const kraken_module_desc *kraken_module_entry(void)
{
    return &desc;
}
