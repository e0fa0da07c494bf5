// FERRUM_API — marks the public classes and functions of libferrum.so.
//
// libferrum is built with hidden visibility by default (-fvisibility=hidden, inline
// functions hidden too); only what carries FERRUM_API is exported. Internal helpers stay
// hidden, so they can change freely without touching the library's symbol list.
#pragma once

#if defined(_WIN32)
#if defined(FERRUM_BUILDING_LIBRARY)
#define FERRUM_API __declspec(dllexport)
#else
#define FERRUM_API __declspec(dllimport)
#endif
#else
#define FERRUM_API __attribute__((visibility("default")))
#endif
