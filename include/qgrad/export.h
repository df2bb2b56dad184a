/* qgrad/export.h — QG_API marks the library's public functions. The library is built
 * with hidden symbol visibility, so only functions declared with QG_API (the qg_
 * functions of the public headers) are exported from libqgrad.so. */
#ifndef QGRAD_EXPORT_H
#define QGRAD_EXPORT_H
#if defined(__GNUC__) || defined(__clang__)
#define QG_API __attribute__((visibility("default")))
#else
#define QG_API
#endif
#endif
