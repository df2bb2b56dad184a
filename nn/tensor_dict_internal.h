/* The tensor dict's layout, shared by the two files that build and read it and by
 * nothing else: nn/tensor_dict.c (the ordered dictionary behind the public
 * qg_tensor_dict_* calls) and nn/safetensors.c (the file format, which fills a dict
 * from a header and writes one out). Also the three dict internals the loader needs. */
#ifndef QG_TENSOR_DICT_INTERNAL_H
#define QG_TENSOR_DICT_INTERNAL_H

#include "internal.h"
#include "qgrad/nn.h"

typedef struct dict_entry {
    char *name;
    qg_tensor *t;
} dict_entry;

typedef struct meta_entry {
    char *key, *val;
} meta_entry;

struct qg_tensor_dict {
    int n, cap;
    dict_entry *e;
    int *slots; /* open-addressing index over e: entry number or -1; nslots a power of 2 */
    int nslots;
    int nmeta, capmeta;
    meta_entry *m;
};

/* Strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF. Names,
 * metadata and a file's whole header must be valid. */
bool qg__valid_utf8(const unsigned char *s, size_t n);

/* Makes room in d's index for n entries (false: out of memory). */
bool qg__dict_reserve(qg_tensor_dict *d, int n);

/* Appends an entry whose name is not in d yet. d owns t from here on, also on failure. */
qg_status qg__dict_append(qg_tensor_dict *d, const char *op, const char *name, qg_tensor *t);

#endif
