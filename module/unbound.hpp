// dnsfw::module — the one place C++ code includes Unbound's headers.
//
// They must come from the configured source tree of the exact Unbound that
// loads the module (struct layouts differ between versions and build
// options; config.h first). CMake adds that tree as a SYSTEM include
// directory so its headers do not trip the project's -Werror, and checks
// at configure time that its version matches the installed binary.
//
// Include this after the C++ standard headers: config.h defines a few
// feature macros and NDEBUG.
#pragma once

extern "C" {
#include "config.h"
#include "util/module.h"
#include "util/regional.h"
#include "util/log.h"
#include "util/net_help.h"
#include "util/data/msgreply.h"
#include "util/data/packed_rrset.h"
#include "util/data/dname.h"
#include "services/cache/dns.h"
#include "respip/respip.h"
#include "dynlibmod/dynlibmod.h"
#include "sldns/rrdef.h"
}

// util/netevent.h, services/mesh.h and daemon/worker.h do not compile as
// C++ (a forward-declared enum); ub_shim.c reads those structures for us.
#include "module/ub_shim.h"
