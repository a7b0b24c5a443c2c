/**
 * @file kraken/kraken.h
 * @brief Umbrella header for libkraken.
 */
#ifndef KRAKEN_KRAKEN_H
#define KRAKEN_KRAKEN_H

#include "codec.h"
#include "engine.h"
#include "error.h"
#include "event.h"
#include "log.h"
#include "mutation.h"
#include "node.h"
#include "schema.h"
#include "sim.h"
#include "store.h"
#include "sync.h"
#include "types.h"
#include "version.h"

#endif
