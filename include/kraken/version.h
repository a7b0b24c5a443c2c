/* SPDX-License-Identifier: BSD-3-Clause */
/**
 * @file kraken/version.h
 * @brief Compile-time and run-time library version.
 */
#ifndef KRAKEN_VERSION_H
#define KRAKEN_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define KRAKEN_VERSION_MAJOR 0
#define KRAKEN_VERSION_MINOR 1
#define KRAKEN_VERSION_PATCH 0
#define KRAKEN_VERSION_STRING "0.1.0"
/** Single number for comparisons: major*10000 + minor*100 + patch. */
#define KRAKEN_VERSION_NUMBER                                                  \
    (KRAKEN_VERSION_MAJOR * 10000 + KRAKEN_VERSION_MINOR * 100 +               \
     KRAKEN_VERSION_PATCH)

/** Version string of the library actually loaded (compare with the header's). */
const char *kraken_version(void);
/** Version number of the library actually loaded (a value, not a status: hence unsigned). */
unsigned kraken_version_number(void);

#ifdef __cplusplus
}
#endif
#endif
