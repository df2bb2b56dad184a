/* qgrad/nn.h — modules, layers, losses and state dicts.
 *
 * Built on qgrad/autograd.h; knows nothing of quantization (that is qgrad/qat.h).
 */
#ifndef QGRAD_NN_H
#define QGRAD_NN_H

#include "qgrad/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================== tensor dicts, safetensors
 *
 * A qg_tensor_dict is an ordered map name -> tensor (insertion order is kept;
 * replacing an entry keeps its place). It owns its tensors and copies of its names;
 * qg_tensor_dict_free frees them all. It also holds the file's "__metadata__", a
 * map string -> string.
 *
 * Files are safetensors: an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"key": "value"}}), then the tensor bytes, little-endian, C order.
 * Dtypes: F32, F64, I64, I32, U8, I8 (and BOOL, read as U8). Loading checks every
 * field, offset and size (a corrupt file gives NULL and a message naming the file,
 * the tensor and the problem, never a crash); like the reference implementation it
 * rejects overlapping tensors and bytes not covered by any tensor.
 */
typedef struct qg_tensor_dict qg_tensor_dict;

qg_tensor_dict *qg_tensor_dict_new(void);
void qg_tensor_dict_free(qg_tensor_dict *d); /* NULL is a no-op */
int qg_tensor_dict_size(const qg_tensor_dict *d);
/* Entry i in insertion order (0 <= i < size); NULL with an error if out of range. */
const char *qg_tensor_dict_name(const qg_tensor_dict *d, int i);
qg_tensor *qg_tensor_dict_at(const qg_tensor_dict *d, int i);
/* NULL with an error (QG_EINVAL, naming the key) if absent. */
qg_tensor *qg_tensor_dict_get(const qg_tensor_dict *d, const char *name);
/* Adds t under name, replacing (and freeing) an existing entry of that name.
 * t must be caller-owned (not an op output: clone those first). The dict takes
 * ownership of t even when the call fails (t is then freed), so
 * qg_tensor_dict_put(d, "w", qg_tensor_clone(w)) never leaks. A tensor may be in a
 * dict only once. Names are non-empty and not "__metadata__". */
qg_status qg_tensor_dict_put(qg_tensor_dict *d, const char *name, qg_tensor *t);
/* The "__metadata__" string map (key and value are copied; setting a key again
 * replaces its value). */
qg_status qg_tensor_dict_set_meta(qg_tensor_dict *d, const char *key, const char *value);
const char *qg_tensor_dict_meta(const qg_tensor_dict *d, const char *key); /* NULL if absent */
int qg_tensor_dict_meta_size(const qg_tensor_dict *d);
/* Metadata entry i (insertion order): its key, and its value through *value. */
const char *qg_tensor_dict_meta_at(const qg_tensor_dict *d, int i, const char **value);

/* Reads a safetensors file; the tensors are new caller-owned contiguous tensors. */
qg_tensor_dict *qg_safetensors_load(const char *path);
/* Same, from a buffer holding a whole file. */
qg_tensor_dict *qg_safetensors_parse(const void *buf, size_t len);
/* Writes d to path: to a temporary file in the same folder, fsync, then rename, so a
 * crash never leaves a half-written file. Each tensor is written in C order whatever
 * its strides; entries keep the dict's order, "__metadata__" comes first. */
qg_status qg_safetensors_save(const char *path, const qg_tensor_dict *d);

/* ======================================================== end tensor dicts */

#ifdef __cplusplus
}
#endif
#endif
