/* SPDX-License-Identifier: BSD-3-Clause */
/* A shared object that is not a kraken module (no kraken_module_entry). */
int not_a_module(void);

int not_a_module(void)
{
    return 42;
}
