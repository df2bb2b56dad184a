/* The int8 model file: a converted model as safetensors, rebuilt from the file alone.
 *
 * Tensors, under each module's path p: p.weight (I8, the integers), p.weight.scale
 * (F64) and p.weight.zero_point (I64), one entry per tensor or per output channel,
 * p.bias (F32) when there is one, p.scale (F32) and p.zero_point (I64) of a static
 * layer's or a Quantize module's output. The metadata: "format" (qgrad.int8/1),
 * "qengine", and "modules", a JSON array of the modules in pre-order, each with its
 * path, type and settings ({"path": "c1", "type": "intrinsic.quantized.ConvReLU2d",
 * "stride": [1, 1], ...}). The root is a Sequential, as are the containers. */
#include <cJSON.h>

#include "internal.h"
#include "qat_internal.h"
#include "qgrad/quant.h"

#define FORMAT "qgrad.int8/1"

/* ------------------------------------------------------------- save */

typedef struct {
    qg_tensor_dict *d;
    cJSON *mods;
    const char *engine; /* of the first layer */
} save_ctx;


static void pair(cJSON *o, const char *k, const int *v) { cJSON_AddItemToObject(o, k, cJSON_CreateIntArray(v, 2)); }

static qg_status put(save_ctx *c, const char *path, const char *key, qg_tensor *t) {
    char name[600];
    snprintf(name, sizeof name, "%s%s%s", path, *path ? "." : "", key);
    if (!t) return qg_last_status();
    return qg_tensor_dict_put(c->d, name, t);
}

/* the integers and the mapping of a quantized weight */
static qg_status put_weight(save_ctx *c, const char *path, cJSON *o, const qg_tensor *w) {
    const qg_quant *q = w->quant;
    int64_t n = q->axis < 0 ? 1 : q->nch;
    qg_tensor *s = qg_tensor_empty(QG_F64, 1, &n), *z = qg_tensor_empty(QG_I64, 1, &n);
    if (s && z) {
        memcpy(qg_tensor_data(s), q->axis < 0 ? &q->scale : q->scales, sizeof(double) * (size_t)n);
        memcpy(qg_tensor_data(z), q->axis < 0 ? &q->zero_point : q->zero_points, sizeof(int64_t) * (size_t)n);
    }
    cJSON_AddNumberToObject(o, "weight_axis", q->axis);
    qg_status st = put(c, path, "weight", qg_tensor_clone(qg_int_repr(w)));
    if (!st) st = put(c, path, "weight.scale", s), s = NULL;
    if (!st) st = put(c, path, "weight.zero_point", z), z = NULL;
    qg_tensor_free(s), qg_tensor_free(z);
    return st;
}

static qg_status save_module(save_ctx *c, qg_module *m, const char *path, cJSON *o) {
    qg_layer_info li;
    if (qg__is_qlayer(m)) {
        qg_qlayer_args a;
        qg_qengine e;
        bool dyn, rr;
        qg__qlayer_info(m, &a, &e, &dyn, &rr);
        pair(o, "stride", a.stride), pair(o, "padding", a.padding), pair(o, "dilation", a.dilation);
        cJSON_AddNumberToObject(o, "groups", a.groups);
        cJSON_AddStringToObject(o, "qengine", qg_qengine_name(e));
        if (!c->engine) c->engine = qg_qengine_name(e);
        if (dyn) cJSON_AddBoolToObject(o, "reduce_range", rr);
        qg_status st = put_weight(c, path, o, qg_module_buffer(m, "weight"));
        if (!st && qg_module_buffer(m, "bias")) st = put(c, path, "bias", qg_tensor_clone(qg_module_buffer(m, "bias")));
        if (!st && !dyn) st = put(c, path, "scale", qg_tensor_clone(qg_module_buffer(m, "scale")));
        if (!st && !dyn) st = put(c, path, "zero_point", qg_tensor_clone(qg_module_buffer(m, "zero_point")));
        return st;
    }
    double s;
    int64_t z;
    qg_qdtype dt;
    if (qg__quantize_info(m, &s, &z, &dt)) {
        cJSON_AddStringToObject(o, "dtype", dt == QG_QUINT8 ? "quint8" : dt == QG_QINT8 ? "qint8" : "qint32");
        qg_status st = put(c, path, "scale", qg_tensor_clone(qg_module_buffer(m, "scale")));
        return st ? st : put(c, path, "zero_point", qg_tensor_clone(qg_module_buffer(m, "zero_point")));
    }
    if (qg_module_is(m, "quantized.DeQuantize") || qg_module_is(m, "ReLU") || qg_module_is(m, "Identity") ||
        qg_module_is(m, "Sequential"))
        return QG_OK;
    if (!qg_nn_layer_info(m, &li) && (qg_module_is(m, "MaxPool2d") || qg_module_is(m, "AvgPool2d"))) {
        int cm[2] = {li.ceil_mode, li.count_include_pad};
        pair(o, "kernel", li.kernel), pair(o, "stride", li.stride), pair(o, "padding", li.padding);
        pair(o, "dilation", li.dilation);
        cJSON_AddBoolToObject(o, "ceil_mode", cm[0]);
        cJSON_AddBoolToObject(o, "count_include_pad", cm[1]);
        cJSON_AddNumberToObject(o, "divisor_override", li.divisor_override);
        return QG_OK;
    }
    if (qg_module_is(m, "AdaptiveAvgPool2d")) {
        double os[2] = {(double)li.out_size[0], (double)li.out_size[1]};
        cJSON_AddItemToObject(o, "output_size", cJSON_CreateDoubleArray(os, 2));
        return QG_OK;
    }
    if (qg_module_is(m, "Flatten")) {
        cJSON_AddNumberToObject(o, "start_dim", li.start_dim);
        cJSON_AddNumberToObject(o, "end_dim", li.end_dim);
        return QG_OK;
    }
    if (qg_module_is(m, "Dropout")) {
        cJSON_AddNumberToObject(o, "p", li.p);
        return QG_OK;
    }
    return qg__err(QG_EINVAL, "quantized_save: module '%s' (%s) has no int8 file format: the file holds qgrad's "
                   "quantized modules, ReLU, the pools, Flatten, Dropout and Identity (convert a QAT model first; a "
                   "custom module's int8 type cannot be saved)", *path ? path : "(the model)", m->type->name);
}

static qg_status save_rec(save_ctx *c, qg_module *m, const char *path) {
    if (m->output_hook)
        return qg__err(QG_EINVAL, "quantized_save: module '%s' (%s) still has an activation_post_process: convert the "
                       "model first", *path ? path : "(the model)", m->type->name);
    bool seq = qg_module_is(m, "Sequential");
    if (!*path && !seq) return qg__err(QG_EINVAL, "quantized_save: the model must be a Sequential, got %s", m->type->name);
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(c->mods, o)) return qg__err(QG_ENOMEM, "quantized_save: out of memory");
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "type", m->type->name);
    qg_status st = save_module(c, m, path, o);
    for (int i = 0; !st && seq && i < qg__module_nchildren(m); i++) {
        const char *name;
        qg_module *ch = qg__module_child_at(m, i, &name);
        char cp[512];
        snprintf(cp, sizeof cp, *path ? "%s.%s" : "%s%s", path, name);
        st = save_rec(c, ch, cp);
    }
    if (!st && !seq && qg__module_nchildren(m))
        st = qg__err(QG_EINVAL, "quantized_save: module '%s' (%s) has children; only Sequential containers are saved",
                     path, m->type->name);
    return st;
}

qg_status qg_quantized_save(const qg_module *model, const char *path) {
    if (!model || !path) return qg__err(QG_EINVAL, "quantized_save: NULL argument");
    save_ctx c = {.d = qg_tensor_dict_new(), .mods = cJSON_CreateArray()};
    qg_status st = c.d && c.mods ? save_rec(&c, (qg_module *)model, "")
                                         : qg__err(QG_ENOMEM, "quantized_save: out of memory");
    char *json = st ? NULL : cJSON_PrintUnformatted(c.mods);
    if (!st && !json) st = qg__err(QG_ENOMEM, "quantized_save: out of memory");
    if (!st) st = qg_tensor_dict_set_meta(c.d, "format", FORMAT);
    if (!st) st = qg_tensor_dict_set_meta(c.d, "qengine", c.engine ? c.engine : qg_qengine_name(qg_get_qengine()));
    if (!st) st = qg_tensor_dict_set_meta(c.d, "modules", json);
    if (!st) st = qg_safetensors_save(path, c.d);
    cJSON_free(json);
    cJSON_Delete(c.mods);
    qg_tensor_dict_free(c.d);
    return st;
}

/* ------------------------------------------------------------- load */

typedef struct {
    const char *file;
    const qg_tensor_dict *d;
    int used;
} load_ctx;

/* the tensor p.key of the file, or NULL (with an error if need) */
static qg_tensor *get(load_ctx *c, const char *path, const char *key, bool need) {
    char name[600];
    snprintf(name, sizeof name, "%s%s%s", path, *path ? "." : "", key);
    for (int i = 0; i < qg_tensor_dict_size(c->d); i++)
        if (!strcmp(qg_tensor_dict_name(c->d, i), name)) {
            c->used++;
            return qg_tensor_dict_at(c->d, i);
        }
    if (need) qg__err(QG_EFORMAT, "quantized_load: %s: tensor '%s' is missing", c->file, name);
    return NULL;
}

static bool get_pair(const cJSON *o, const char *k, int *v) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2) return false;
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(e) || e->valuedouble != (int)e->valuedouble || e->valuedouble < 0 || e->valuedouble > 1e6)
            return false;
        v[i] = (int)e->valuedouble;
    }
    return true;
}

static bool get_num(const cJSON *o, const char *k, double lo, double hi, double *v) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(e) || !(e->valuedouble >= lo && e->valuedouble <= hi)) return false;
    *v = e->valuedouble;
    return true;
}

static qg_tensor *scalar_of(load_ctx *c, const char *path, const char *key, qg_dtype dt, double *v) {
    qg_tensor *t = get(c, path, key, true);
    if (t && (t->dtype != dt || qg_tensor_numel(t) != 1)) {
        qg__err(QG_EFORMAT, "quantized_load: %s: '%s.%s' must be one %s value", c->file, path, key, qg_dtype_name(dt));
        return NULL;
    }
    if (t) *v = qg_tensor_item(t);
    return t;
}

static qg_module *load_layer(load_ctx *c, const cJSON *o, const char *path, const char *type) {
    const bool dyn = !strcmp(type, "quantized.dynamic.Linear");
    qg_qlayer_args a = {.dim = strstr(type, "Linear") ? 0 : strstr(type, "1d") ? 1 : 2, .relu = strstr(type, "ReLU") != NULL};
    double g = 1, axis = -1;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "qengine");
    qg_qengine engine = QG_QENGINE_ONEDNN;
    if (cJSON_IsString(e) && !strcmp(e->valuestring, "qnnpack")) engine = QG_QENGINE_QNNPACK;
    else if (!cJSON_IsString(e) || strcmp(e->valuestring, "onednn"))
        return qg__err(QG_EFORMAT, "quantized_load: %s: module '%s' needs a qengine (onednn or qnnpack)", c->file, path), NULL;
    if (!get_pair(o, "stride", a.stride) || !get_pair(o, "padding", a.padding) || !get_pair(o, "dilation", a.dilation) ||
        !get_num(o, "groups", 1, 1e6, &g) || !get_num(o, "weight_axis", -1, 0, &axis))
        return qg__err(QG_EFORMAT, "quantized_load: %s: module '%s' (%s) has missing or bad settings", c->file, path,
                       type), NULL;
    a.groups = (int)g;
    qg_tensor *w = get(c, path, "weight", true), *ws = w ? get(c, path, "weight.scale", true) : NULL;
    qg_tensor *wz = ws ? get(c, path, "weight.zero_point", true) : NULL, *b = get(c, path, "bias", false);
    if (!wz) return NULL;
    if (w->dtype != QG_I8 || ws->dtype != QG_F64 || wz->dtype != QG_I64 || ws->ndim != 1 || wz->ndim != 1)
        return qg__err(QG_EFORMAT, "quantized_load: %s: '%s.weight' must be I8 with F64 scales and I64 zero points",
                       c->file, path), NULL;
    qg_tensor *qw = axis < 0 ? (qg_tensor_numel(ws) == 1 && qg_tensor_numel(wz) == 1
                                    ? qg_make_per_tensor_quantized(w, qg_tensor_item(ws), (int64_t)qg_tensor_item(wz))
                                    : (qg__err(QG_EFORMAT, "per-tensor weight with %lld scales", (long long)qg_tensor_numel(ws)), NULL))
                             : qg_make_per_channel_quantized(w, ws, wz, 0);
    qg_module *m = NULL;
    if (qw && dyn) {
        const cJSON *rr = cJSON_GetObjectItemCaseSensitive(o, "reduce_range");
        m = qg_quantized_dynamic_linear_new(qw, b, !cJSON_IsFalse(rr), engine);
    } else if (qw) {
        double s = 0, z = 0;
        if (scalar_of(c, path, "scale", QG_F32, &s) && scalar_of(c, path, "zero_point", QG_I64, &z))
            m = qg_quantized_layer_new(qw, b, s, (int64_t)z, &a, engine);
    }
    if (!m && qg_last_status() != QG_EFORMAT)
        qg__err(QG_EFORMAT, "quantized_load: %s: module '%s' (%s): %s", c->file, path, type, qg_last_error());
    return m;
}

static qg_module *load_module(load_ctx *c, const cJSON *o, const char *path, const char *type) {
    if (!strcmp(type, "Sequential")) return qg_sequential_new();
    if (!strcmp(type, "quantized.DeQuantize")) return qg_quantized_dequantize_new();
    if (!strcmp(type, "ReLU")) return qg_nn_relu_new();
    if (!strcmp(type, "Identity")) return qg_nn_identity_new();
    if (qg__qlayer_type_name(type)) return load_layer(c, o, path, type);
    double v[3];
    int k[2], s[2], p[2], d[2];
    const char *bad = "missing or bad settings";
    if (!strcmp(type, "quantized.Quantize")) {
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "dtype");
        qg_qdtype q = QG_QUINT8;
        if (cJSON_IsString(dt) && !strcmp(dt->valuestring, "qint8")) q = QG_QINT8;
        else if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "quint8")) goto bad_settings;
        if (!scalar_of(c, path, "scale", QG_F32, v) || !scalar_of(c, path, "zero_point", QG_I64, v + 1)) return NULL;
        qg_module *m = qg_quantized_quantize_new(v[0], (int64_t)v[1], q);
        if (!m) qg__err(QG_EFORMAT, "quantized_load: %s: module '%s': %s", c->file, path, qg_last_error());
        return m;
    }
    if (!strcmp(type, "MaxPool2d") || !strcmp(type, "AvgPool2d")) {
        const cJSON *cm = cJSON_GetObjectItemCaseSensitive(o, "ceil_mode");
        const cJSON *cip = cJSON_GetObjectItemCaseSensitive(o, "count_include_pad");
        if (!get_pair(o, "kernel", k) || !get_pair(o, "stride", s) || !get_pair(o, "padding", p) ||
            !get_pair(o, "dilation", d) || !cJSON_IsBool(cm) || !cJSON_IsBool(cip) ||
            !get_num(o, "divisor_override", 0, 1e9, v))
            goto bad_settings;
        qg_pool_opts po = {.stride = {s[0], s[1]}, .padding = {p[0], p[1]}, .dilation = {d[0], d[1]},
                           .ceil_mode = cJSON_IsTrue(cm), .no_count_include_pad = cJSON_IsFalse(cip),
                           .divisor_override = (int)v[0]};
        qg_module *m = type[0] == 'M' ? qg_nn_maxpool2d_new(k[0], k[1], &po) : qg_nn_avgpool2d_new(k[0], k[1], &po);
        if (m) return m;
        bad = qg_last_error();
        goto bad_settings;
    }
    if (!strcmp(type, "AdaptiveAvgPool2d")) {
        int os[2];
        qg_module *m = get_pair(o, "output_size", os) ? qg_nn_adaptive_avgpool2d_new(os[0], os[1]) : NULL;
        if (m) return m;
        goto bad_settings;
    }
    if (!strcmp(type, "Flatten")) {
        if (!get_num(o, "start_dim", -8, 8, v) || !get_num(o, "end_dim", -8, 8, v + 1)) goto bad_settings;
        return qg_nn_flatten_new((int)v[0], (int)v[1]);
    }
    if (!strcmp(type, "Dropout")) {
        qg_module *m = get_num(o, "p", 0, 1, v) ? qg_nn_dropout_new(v[0], NULL) : NULL;
        if (m) qg_module_eval(m);
        if (m) return m;
        goto bad_settings;
    }
    return qg__err(QG_EFORMAT, "quantized_load: %s: module '%s' has a type qgrad cannot rebuild: %s", c->file, path,
                   type), NULL;
bad_settings:
    return qg__err(QG_EFORMAT, "quantized_load: %s: module '%s' (%s): %s", c->file, path, type, bad), NULL;
}

/* The Sequential a dotted path's parent is, and the last component. */
static qg_module *parent_of(qg_module *root, const char *path, const char **name) {
    const char *dot = strrchr(path, '.');
    *name = dot ? dot + 1 : path;
    if (!dot) return root;
    char pp[512];
    snprintf(pp, sizeof pp, "%.*s", (int)(dot - path), path);
    qg_module *p = qg_module_get(root, pp);
    return p && qg_module_is(p, "Sequential") ? p : NULL;
}

static qg_module *rebuild(load_ctx *c, const cJSON *mods) {
    qg_module *root = NULL;
    const cJSON *o;
    int i = 0;
    cJSON_ArrayForEach(o, mods) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "path"), *t = cJSON_GetObjectItemCaseSensitive(o, "type");
        if (!cJSON_IsString(p) || !cJSON_IsString(t) || strlen(p->valuestring) >= 400) {
            qg__err(QG_EFORMAT, "quantized_load: %s: module entry %d needs a path and a type", c->file, i);
            break;
        }
        const char *path = p->valuestring, *name;
        if (i++ == 0) {
            if (*path || strcmp(t->valuestring, "Sequential")) {
                qg__err(QG_EFORMAT, "quantized_load: %s: the first module must be the Sequential root", c->file);
                break;
            }
            root = qg_sequential_new();
            if (!root) break;
            continue;
        }
        qg_module *parent = *path ? parent_of(root, path, &name) : NULL;
        if (!parent || !*name || qg_module_child(parent, name)) {
            qg__err(QG_EFORMAT, "quantized_load: %s: module '%s' has no Sequential parent before it, or comes twice",
                    c->file, path);
            break;
        }
        qg_module *m = load_module(c, o, path, t->valuestring);
        if (!m || qg_sequential_add(parent, name, m)) break;
        qg_module_set_path(m, path);
        qg_module_eval(m);
    }
    if (root && (i == 0 || o != NULL)) { /* stopped early: an error is set */
        qg_module_free(root);
        return NULL;
    }
    if (!root) {
        if (!*qg_last_error()) qg__err(QG_EFORMAT, "quantized_load: %s: the module list is empty", c->file);
        return NULL;
    }
    if (c->used != qg_tensor_dict_size(c->d)) {
        qg_module_free(root);
        return qg__err(QG_EFORMAT, "quantized_load: %s: %d of its %d tensors belong to no module", c->file,
                       qg_tensor_dict_size(c->d) - c->used, qg_tensor_dict_size(c->d)), NULL;
    }
    qg_module_eval(root);
    return root;
}

qg_module *qg_quantized_load(const char *path) {
    if (!path) return qg__err(QG_EINVAL, "quantized_load: path is NULL"), NULL;
    qg_tensor_dict *d = qg_safetensors_load(path);
    if (!d) return NULL;
    const char *fmt = qg_tensor_dict_meta(d, "format"), *mods = qg_tensor_dict_meta(d, "modules");
    qg_module *m = NULL;
    if (!fmt || strcmp(fmt, FORMAT) || !mods) {
        qg__err(QG_EFORMAT, "quantized_load: %s is not a qgrad int8 model (metadata format \"%s\", want \"%s\")", path,
                fmt ? fmt : "", FORMAT);
    } else {
        cJSON *j = cJSON_Parse(mods);
        load_ctx c = {path, d, 0};
        if (!cJSON_IsArray(j))
            qg__err(QG_EFORMAT, "quantized_load: %s: the \"modules\" metadata is not a JSON array", path);
        else
            m = rebuild(&c, j);
        cJSON_Delete(j);
    }
    qg_tensor_dict_free(d);
    return m;
}
