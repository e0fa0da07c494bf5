/* ferrum — umbrella header of the C ABI: everything a plugin or host needs. */
#ifndef FERRUM_H
#define FERRUM_H
#include "ferrum_plugin.h"
#endif /* FERRUM_H */
