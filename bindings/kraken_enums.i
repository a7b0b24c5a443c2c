/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Enums and constants of the public headers, for the layers above (kraken.core.KRAKEN_T_ENUM,
 * kraken.KRAKEN_EVENT_DISCOVERY): every function, struct and variable of these headers is left
 * out here; the kb_ layer is what the languages call.
 */
%rename("$ignore", %$isfunction) "";
%rename("$ignore", %$isclass) "";
%rename("$ignore", %$isvariable) "";
%include "kraken/error.h"
%include "kraken/types.h"
%include "kraken/log.h"
%include "kraken/node.h"
%include "kraken/store.h"
%include "kraken/event.h"
%include "kraken/mutation.h"
%include "kraken/engine.h"
