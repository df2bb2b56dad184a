/* qg_export_c: an int8 model as a standalone C99 model (qgrad/deploy.h). The plan
 * (export_plan.c) lists the steps with their shapes and quantization; each step
 * becomes a call of one of the routines of export_c_runtime.c (copied into NAME.c, the
 * used sections only) on constants written here: int8 weights as decimal arrays,
 * float constants as hexadecimal floats, so that they are the very bits qgrad's model
 * computes with. Activations ping-pong between two regions of the caller's scratch
 * buffer; the first step reads the input, the last writes the output. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export_plan.h"
#include "qlayer.h"

#define WHO "export_c"

extern const char qg__export_c_runtime[]; /* export_c_runtime.c, embedded by the build */

/* ------------------------------------------------------------- runtime sections */

enum { R_RNE, R_S32, R_QUANTIZE, R_DEQUANTIZE, R_RELU_Q, R_RELU_F, R_REQUANT, R_CONV, R_LINEAR, R_POOL, R_DYNAMIC, R_N };
static const char *const sect_names[R_N] = {"rne",     "s32",  "quantize", "dequantize", "relu_q", "relu_f",
                                            "requant", "conv", "linear",   "pool",       "dynamic"};

typedef struct {
    const char *start[R_N], *end[R_N];
    bool needs[R_N][R_N];
} sections;

/* Each section's code in bytes, as gcc 12 -Os makes it for x86-64 (nm -S of the
 * runtime), for the estimate in NAME.h; test_export_c compares it with `size`. Other
 * targets and options differ. The run function adds about 12 bytes per step. */
static const int sect_code[R_N] = {17, 3, 124, 34, 31, 33, 142, 445, 158, 991, 977};

/* Splits the runtime at its marker lines ("@ name: needs @" in a comment). */
static qg_status find_sections(sections *s) {
    memset(s, 0, sizeof *s);
    const char *p = qg__export_c_runtime;
    int cur = -1;
    while ((p = strstr(p, "/*@ "))) {
        const char *name = p + 4, *colon = strchr(name, ':'), *close = strstr(name, " @*/");
        if (!colon || !close || colon > close) break;
        if (cur >= 0) s->end[cur] = p;
        cur = -1;
        for (int i = 0; i < R_N; i++)
            if ((size_t)(colon - name) == strlen(sect_names[i]) && !strncmp(name, sect_names[i], (size_t)(colon - name)))
                cur = i;
        if (cur < 0) break;
        for (int i = 0; i < R_N; i++) { /* the needs: whole words between the colon and the close */
            size_t n = strlen(sect_names[i]);
            for (const char *q = colon + 1; q + n <= close; q++)
                if (!strncmp(q, sect_names[i], n) && q[-1] == ' ' && (q[n] == ' ' || q + n == close))
                    s->needs[cur][i] = true;
        }
        s->start[cur] = strchr(close, '\n') + 1;
        p = close;
    }
    if (cur >= 0) s->end[cur] = qg__export_c_runtime + strlen(qg__export_c_runtime);
    for (int i = 0; i < R_N; i++)
        if (!s->start[i] || !s->end[i])
            return qg__err(QG_EINVAL, "%s: internal error: the runtime has no section '%s'", WHO, sect_names[i]);
    return QG_OK;
}

/* ------------------------------------------------------------- the generator */

typedef struct {
    const char *name;
    qg__xplan *p;
    const char *at;       /* the step being written, for messages */
    qg__text c;           /* NAME.c after its runtime */
    bool used[R_N];
    size_t weight_bytes, const_bytes, code_bytes;
    size_t size[3];       /* the largest value in scratch regions a, b, and the dynamic Linear's input */
    qg_status st;
} gen;

static void use(gen *g, int r) { g->used[r] = true; }

static void i8_array(gen *g, const char *var, const int8_t *v, int64_t n) {
    qg__text_printf(&g->c, "static const int8_t %s[%lld] = {", var, (long long)n);
    for (int64_t i = 0; i < n; i++) qg__text_printf(&g->c, "%s%d,", i % 24 ? "" : "\n    ", v[i]);
    qg__text_printf(&g->c, "\n};\n");
    g->weight_bytes += (size_t)n, g->const_bytes += (size_t)n;
}

static void i32_array(gen *g, const char *var, const int32_t *v, int64_t n) {
    qg__text_printf(&g->c, "static const int32_t %s[%lld] = {", var, (long long)n);
    for (int64_t i = 0; i < n; i++) qg__text_printf(&g->c, "%s%ld,", i % 8 ? " " : "\n    ", (long)v[i]);
    qg__text_printf(&g->c, "\n};\n");
    g->const_bytes += sizeof(int32_t) * (size_t)n;
}

/* a float as a C99 hexadecimal literal: the exact bits */
static const char *hexf(gen *g, float v, char *b, size_t n, const char *what) {
    if (!isfinite(v)) {
        if (!g->st)
            g->st = qg__err(QG_EINVAL, "%s: module %s: %s is %g: a C model holds finite constants only", WHO,
                            g->at ? g->at : "?", what, v);
        v = 0;
    }
    snprintf(b, n, "%af", (double)v);
    return b;
}

static void f32_array(gen *g, const char *var, const float *v, int64_t n, const char *what) {
    char b[40];
    qg__text_printf(&g->c, "static const float %s[%lld] = {", var, (long long)n);
    for (int64_t i = 0; i < n; i++)
        qg__text_printf(&g->c, "%s%s,", i % 6 ? " " : "\n    ", hexf(g, v[i], b, sizeof b, what));
    qg__text_printf(&g->c, "\n};\n");
    g->const_bytes += sizeof(float) * (size_t)n;
}

/* s fit for a C comment: no comment end, no line break or other control character */
static const char *comment_safe(const char *s, char *b, size_t n) {
    size_t k = 0;
    for (; *s && k + 2 < n; s++) {
        unsigned char c = (unsigned char)*s;
        b[k++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
        if (c == '*' && s[1] == '/') b[k++] = ' ';
    }
    b[k] = 0;
    return b;
}

/* The buffers of the run function: the input, the output, scratch regions a and b. */
enum { B_IN, B_OUT, B_A, B_B };
static const char *fptr(int b) { return b == B_IN ? "in" : b == B_OUT ? "out" : b == B_A ? "(float *)(void *)a" : "(float *)(void *)b"; }
static const char *uptr(int b) {
    QG_ASSERT(b == B_A || b == B_B); /* quint8 values live in scratch: the input and output are f32 */
    return b == B_A ? "a" : "b";
}

/* A static Linear or Conv: its constants, and the call. */
static void emit_layer(gen *g, qg__text *run, int i, const qg__xstep *s, int src, int dst) {
    const qg__qlayer *q = (const qg__qlayer *)s->m;
    char var[32], b1[40];
    if (!q->cached || q->cache_sx != s->in.scale) { /* the plan's forward set them */
        if (!g->st)
            g->st = qg__err(QG_EINVAL, "%s: module '%s' (%s) ran with another input scale than the one it has here: "
                            "a module used twice in a model has no C form", WHO, s->path, s->type);
        return;
    }
    const qg_tensor *w = qg_contiguous(qg_int_repr(qg_module_buffer(s->m, "weight")));
    if (!w) {
        if (!g->st) g->st = qg_last_status();
        return;
    }
    const bool onednn = q->engine == QG_QENGINE_ONEDNN;
    const int dim = q->a.dim;
    int64_t C = q->in, H, W = 1, OH = 1, OW = 1;
    if (dim == 0) {
        H = qg__xval_numel(&s->in) / q->in;
    } else {
        const int nd = s->in.ndim;
        H = dim == 2 ? s->in.shape[nd - 2] : 1, W = s->in.shape[nd - 1];
        OH = dim == 2 ? s->out.shape[nd - 2] : 1, OW = s->out.shape[nd - 1];
    }
    snprintf(var, sizeof var, "w%d", i);
    i8_array(g, var, (const int8_t *)qg_tensor_data(w), qg_tensor_numel(w));
    snprintf(var, sizeof var, "m%d", i);
    f32_array(g, var, q->mult, q->out, "a requantization multiplier");
    snprintf(var, sizeof var, onednn ? "ba%d" : "bq%d", i);
    if (onednn)
        f32_array(g, var, q->badd, q->out, "a bias in the accumulator's units");
    else
        i32_array(g, var, q->ibias, q->out);
    char badd[32] = "0", ibias[32] = "0";
    snprintf(onednn ? badd : ibias, 32, "%s", var);
    qg__text_printf(&g->c,
                    "static const layer l%d = {%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %d, %d, %d, %d, %d, %d, "
                    "%lld,\n    %lld, %lld, %d, %s, w%d, m%d, %s, %s};\n",
                    i, (long long)C, (long long)H, (long long)W, (long long)q->out, (long long)OH, (long long)OW,
                    (long long)q->kh, (long long)q->kw, q->sh, q->sw, q->ph, q->pw, q->dh, q->dw, (long long)q->G,
                    (long long)s->in.zp, (long long)q->ozp, onednn,
                    hexf(g, q->a.relu ? 0.0f : -(float)q->ozp, b1, sizeof b1, "a lower bound"), i, i, badd, ibias);
    use(g, dim ? R_CONV : R_LINEAR);
    qg__text_printf(run, "    %s(&l%d, %s, %s);\n", dim ? "conv" : "linear", i, uptr(src), uptr(dst));
}

static void emit_dynamic(gen *g, qg__text *run, int i, const qg__xstep *s, int src, int dst) {
    const qg__qlayer *q = (const qg__qlayer *)s->m;
    char var[32];
    const qg_tensor *w = qg_contiguous(qg_int_repr(qg_module_buffer(s->m, "weight")));
    if (!w) {
        if (!g->st) g->st = qg_last_status();
        return;
    }
    const bool onednn = q->engine == QG_QENGINE_ONEDNN;
    const int64_t rows = qg__xval_numel(&s->in) / q->in;
    snprintf(var, sizeof var, "w%d", i);
    i8_array(g, var, (const int8_t *)qg_tensor_data(w), qg_tensor_numel(w));
    snprintf(var, sizeof var, "ws%d", i);
    f32_array(g, var, q->wscale, q->out, "a weight scale");
    snprintf(var, sizeof var, "bias%d", i);
    f32_array(g, var, q->bias, q->out, "a bias");
    qg__text_printf(&g->c, "static const dyn_linear l%d = {%lld, %lld, %lld, %d, %d, w%d, ws%d, bias%d, %d};\n", i,
                    (long long)q->in, (long long)q->out, (long long)rows, onednn, onednn && q->reduce_range ? 127 : 255,
                    i, i, i, q->has_bias);
    size_t nq = (size_t)(rows * q->in);
    if (nq > g->size[2]) g->size[2] = nq;
    use(g, R_DYNAMIC);
    qg__text_printf(run, "    if (dynamic(&l%d, %s, %s, xq)) return -2;\n", i, fptr(src), fptr(dst));
}

static void emit_pool(gen *g, qg__text *run, int i, const qg__xstep *s, int src, int dst) {
    const qg__qpool_desc *d = &s->pool;
    char b[40];
    qg__text_printf(&g->c,
                    "static const pool l%d = {%d, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, "
                    "%lld, %lld, %lld, %d, %lld, %s};\n",
                    i, (int)d->rule, (long long)d->C, (long long)d->H, (long long)d->W, (long long)d->OH,
                    (long long)d->OW, (long long)d->kh, (long long)d->kw, (long long)d->sh, (long long)d->sw,
                    (long long)d->ph, (long long)d->pw, (long long)d->dh, (long long)d->dw, (long long)d->divisor,
                    d->count_include_pad, (long long)s->in.zp, hexf(g, d->ms, b, sizeof b, "a pool multiplier"));
    use(g, R_POOL);
    qg__text_printf(run, "    pool2d(&l%d, %s, %s);\n", i, uptr(src), uptr(dst));
}

/* One step from buffer src to dst. */
static void emit_step(gen *g, qg__text *run, int i, const qg__xstep *s, int src, int dst) {
    const long long n = (long long)qg__xval_numel(&s->in);
    char b[40], pb[300];
    qg__text_printf(run, "    /* %s: %s */\n", comment_safe(s->path, pb, sizeof pb), s->type);
    switch (s->kind) {
        case QG_XS_QUANTIZE:
            use(g, R_QUANTIZE);
            qg__text_printf(run, "    quantize(%s, %s, %lld, %s, %lld);\n", fptr(src), uptr(dst), n,
                            hexf(g, 1.0f / (float)s->out.scale, b, sizeof b, "a Quantize reciprocal"),
                            (long long)s->out.zp);
            g->const_bytes += 8;
            break;
        case QG_XS_DEQUANTIZE:
            use(g, R_DEQUANTIZE);
            qg__text_printf(run, "    dequantize(%s, %s, %lld, %s, %lld);\n", uptr(src), fptr(dst), n,
                            hexf(g, (float)s->in.scale, b, sizeof b, "a DeQuantize scale"), (long long)s->in.zp);
            g->const_bytes += 8;
            break;
        case QG_XS_RELU:
            use(g, s->in.q ? R_RELU_Q : R_RELU_F);
            if (s->in.q)
                qg__text_printf(run, "    relu_q(%s, %s, %lld, %lld);\n", uptr(src), uptr(dst), n, (long long)s->in.zp);
            else
                qg__text_printf(run, "    relu_f(%s, %s, %lld);\n", fptr(src), fptr(dst), n);
            break;
        case QG_XS_LAYER: emit_layer(g, run, i, s, src, dst); break;
        case QG_XS_DYNAMIC: emit_dynamic(g, run, i, s, src, dst); break;
        case QG_XS_POOL: emit_pool(g, run, i, s, src, dst); break;
        case QG_XS_NOOP: break;
    }
}

/* The run function: each computing step reads the buffer the one before wrote and
 * writes the other scratch region, the last the output. */
static void emit_run(gen *g, qg__text *run) {
    const qg__xplan *p = g->p;
    int last = -1, cur = B_IN;
    for (int i = 0; i < p->n; i++)
        if (p->s[i].kind != QG_XS_NOOP) last = i;
    qg__text_printf(run, "int %s_run(const float *in, float *out, void *scratch) {\n", g->name);
    qg__text_printf(run, "    unsigned char *a = (unsigned char *)scratch, *b = a + %s_B, *xq = a + %s_Q;\n",
                    g->name, g->name);
    qg__text_printf(run, "    if (!in || !out || !scratch) return -1;\n");
    qg__text_printf(run, "    (void)b, (void)xq;\n");
    for (int i = 0; i < p->n; i++) {
        const qg__xstep *s = &p->s[i];
        if (s->kind == QG_XS_NOOP) {
            char pb[300];
            qg__text_printf(run, "    /* %s: %s, nothing to compute */\n", comment_safe(s->path, pb, sizeof pb), s->type);
            continue;
        }
        int dst = i == last ? B_OUT : cur == B_A ? B_B : B_A;
        if (dst != B_OUT) {
            size_t bytes = (size_t)qg__xval_numel(&s->out) * (s->out.q ? 1 : sizeof(float));
            size_t *sz = &g->size[dst == B_A ? 0 : 1];
            if (bytes > *sz) *sz = bytes;
        }
        char at[400];
        snprintf(at, sizeof at, "'%s' (%s)", s->path, s->type);
        g->at = at;
        emit_step(g, run, i, s, cur, dst);
        g->at = NULL;
        cur = dst;
    }
    if (last < 0) { /* nothing computes: the output is the input */
        qg__text_printf(run, "    {\n        int32_t i;\n        for (i = 0; i < %lld; i++) out[i] = in[i];\n    }\n",
                        (long long)qg__xval_numel(&p->in));
    }
    qg__text_printf(run, "    return 0;\n}\n");
}

static void shape_str(const qg__xval *v, char *b, size_t n) {
    size_t k = (size_t)snprintf(b, n, "%s (", v->q ? "quint8" : "f32");
    for (int d = 0; d < v->ndim && k < n; d++) k += (size_t)snprintf(b + k, n - k, d ? ", %lld" : "%lld", (long long)v->shape[d]);
    if (k < n) snprintf(b + k, n - k, ")");
}

static size_t align4(size_t n) { return (n + 3) & ~(size_t)3; }

/* the sections the used ones need, transitively */
static void closure(const gen *g, const sections *sec, bool need[R_N]) {
    memcpy(need, g->used, sizeof(bool) * R_N);
    for (int pass = 0; pass < R_N; pass++)
        for (int i = 0; i < R_N; i++)
            for (int j = 0; j < R_N; j++) need[j] = need[j] || (need[i] && sec->needs[i][j]);
}

static void emit_header(gen *g, qg__text *h, size_t scratch, int nsteps) {
    const qg__xplan *p = g->p;
    const char *n = g->name;
    char a[160], b[160];
    qg__text_printf(h, "/* %s.h: an int8 model exported by qgrad (qg_export_c). C99, freestanding: no malloc,\n"
                       " * no libm, no runtime. %s_run computes what the qgrad int8 model computes, bit for bit,\n"
                       " * on one sample.\n *\n", n, n);
    qg__text_printf(h, " * Flash: %zu bytes of constants (%zu of them int8 weights) and about %zu bytes of\n"
                       " *        code (x86-64, gcc -Os; `size %s.o` tells for your target): about %zu in all.\n"
                       " * RAM:   %zu bytes of scratch (%s_SCRATCH_BYTES), the caller's, and a small stack.\n"
                       " *\n * Steps (the model's modules, one sample, batch dimension 1):\n", g->const_bytes,
                    g->weight_bytes, g->code_bytes, n, g->const_bytes + g->code_bytes, scratch, n);
    for (int i = 0; i < p->n; i++) {
        char pb[300];
        shape_str(&p->s[i].in, a, sizeof a), shape_str(&p->s[i].out, b, sizeof b);
        qg__text_printf(h, " *   %-14s %-32s %s -> %s\n", comment_safe(p->s[i].path, pb, sizeof pb), p->s[i].type, a, b);
    }
    qg__text_printf(h, " * (%d steps compute.) */\n", nsteps);
    qg__text_printf(h, "#ifndef %s_H\n#define %s_H\n\n", n, n);
    qg__text_printf(h, "#define %s_IN_SIZE %lld  /* floats in */\n", n, (long long)qg__xval_numel(&p->in));
    qg__text_printf(h, "#define %s_OUT_SIZE %lld  /* floats out */\n", n, (long long)qg__xval_numel(&p->out));
    qg__text_printf(h, "#define %s_SCRATCH_BYTES %zu\n\n", n, scratch);
    qg__text_printf(h, "/* scratch of the right size and alignment: static %s_scratch_t s; %s_run(in, out, &s); */\n"
                       "typedef union {\n    float f;\n    unsigned char bytes[%s_SCRATCH_BYTES];\n} %s_scratch_t;\n\n",
                    n, n, n, n);
    qg__text_printf(h, "/* in: %s_IN_SIZE floats, one sample in C order; out: %s_OUT_SIZE floats; scratch:\n"
                       " * %s_SCRATCH_BYTES bytes aligned for a float. Returns 0, -1 if an argument is NULL,\n"
                       " * -2 if a dynamic Linear's input has an infinite minimum or maximum or a NaN first value. */\n"
                       "int %s_run(const float *in, float *out, void *scratch);\n\n#endif\n", n, n, n, n);
}

static void emit_source(gen *g, const sections *sec, const qg__text *run, size_t ob, size_t oq, qg__text *c) {
    const char *n = g->name;
    qg__text_printf(c, "/* %s.c: generated by qgrad (qg_export_c); see %s.h. */\n", n, n);
    qg__text_printf(c, "#include <float.h>\n#include <stdint.h>\n\n#include \"%s.h\"\n\n", n);
    qg__text_printf(c,
                    "/* Every result is rounded as qgrad rounds it: float arithmetic in float (no x87\n"
                    " * excess precision), IEEE rules (no -ffast-math, -fassociative-math or other unsafe-math\n"
                    " * flags), and no multiply fused into an add (nor -ffp-contract=fast under clang). */\n"
                    "#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0\n"
                    "#error \"%s.c needs FLT_EVAL_METHOD == 0 (SSE2 on x86, or any single-precision FPU)\"\n#endif\n"
                    "#ifdef __FAST_MATH__\n#error \"%s.c must not be compiled with -ffast-math\"\n#endif\n"
                    "#if FLT_MANT_DIG != 24\n#error \"%s.c needs IEEE single-precision floats\"\n#endif\n"
                    "#if defined(__GNUC__) && !defined(__clang__)\n#pragma GCC optimize(\"fp-contract=off\")\n"
                    "#else\n#pragma STDC FP_CONTRACT OFF\n#endif\n\n",
                    n, n, n);
    qg__text_printf(c, "#define %s_B %zu /* scratch: region a at 0, b here, the dynamic Linear's input at Q */\n"
                       "#define %s_Q %zu\n\n", n, ob, n, oq);
    bool need[R_N];
    closure(g, sec, need);
    for (int i = 0; i < R_N; i++)
        if (need[i]) qg__text_add(c, sec->start[i], (size_t)(sec->end[i] - sec->start[i]));
    qg__text_printf(c, "\n/* ---- the model's constants */\n\n");
    qg__text_add(c, g->c.p ? g->c.p : "", g->c.n);
    qg__text_printf(c, "\n/* ---- the model */\n\n");
    qg__text_add(c, run->p ? run->p : "", run->n);
}

static qg_status check_name(const char *dir, const char *name) {
    struct stat sb;
    if (!dir || !name) return qg__err(QG_EINVAL, "%s: %s is NULL", WHO, dir ? "name" : "dir");
    bool ok = (isalpha((unsigned char)name[0]) || name[0] == '_') && strlen(name) <= 64;
    for (const char *c = name; ok && *c; c++) ok = isalnum((unsigned char)*c) || *c == '_';
    if (!ok)
        return qg__err(QG_EINVAL, "%s: name '%s' must be a C identifier of at most 64 characters (letters, digits, "
                       "_; not starting with a digit)", WHO, name);
    if (stat(dir, &sb)) return qg__err(QG_EIO, "%s: folder '%s': %s", WHO, dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return qg__err(QG_EIO, "%s: '%s' is not a folder", WHO, dir);
    return QG_OK;
}

/* Writes both files, whole or not at all. */
static qg_status write_pair(const char *dir, const char *name, const qg__text *h, const qg__text *c) {
    char *ph = qg__alloc(strlen(dir) + strlen(name) + 8), *pc = qg__alloc(strlen(dir) + strlen(name) + 8);
    qg__afile fh = {.fd = -1}, fc = {.fd = -1};
    if (!ph || !pc) {
        qg__free(ph), qg__free(pc);
        return qg__err(QG_ENOMEM, "%s: out of memory", WHO);
    }
    sprintf(ph, "%s/%s.h", dir, name), sprintf(pc, "%s/%s.c", dir, name);
    qg_status st = qg__afile_open(&fh, WHO, ph);
    if (!st) st = qg__afile_open(&fc, WHO, pc);
    if (!st) {
        qg__afile_write(&fh, h->p, h->n), qg__afile_write(&fc, c->p, c->n);
        st = qg__afile_finish(&fh);
    }
    if (!st) st = qg__afile_finish(&fc);
    if (!st) st = qg__afile_commit(&fh);
    if (!st && (st = qg__afile_commit(&fc))) unlink(ph); /* no header without its source */
    qg__afile_abort(&fh), qg__afile_abort(&fc);
    qg__free(ph), qg__free(pc);
    return st;
}

qg_status qg_export_c(qg_module *model, const char *dir, const char *name, const qg_export_opts *o,
                      qg_export_info *info) {
    sections sec;
    qg__xplan p;
    qg_status st = check_name(dir, name);
    if (!st) st = find_sections(&sec);
    if (!st) st = qg__xplan_build(model, o, WHO, &p);
    if (st) return st;
    gen g = {.name = name, .p = &p};
    qg__text run = {0}, h = {0}, c = {0};
    emit_run(&g, &run);
    int nsteps = 0;
    for (int i = 0; i < p.n; i++) nsteps += p.s[i].kind != QG_XS_NOOP;
    bool need[R_N];
    closure(&g, &sec, need);
    g.code_bytes = 40 + 12 * (size_t)nsteps;
    for (int i = 0; i < R_N; i++) g.code_bytes += need[i] ? (size_t)sect_code[i] : 0;
    const size_t ob = align4(g.size[0]), oq = ob + align4(g.size[1]);
    size_t scratch = oq + align4(g.size[2]);
    if (!scratch) scratch = 4;
    emit_header(&g, &h, scratch, nsteps);
    emit_source(&g, &sec, &run, ob, oq, &c);
    st = g.st;
    if (!st && (g.c.oom || run.oom || h.oom || c.oom)) st = qg__err(QG_ENOMEM, "%s: out of memory for the text", WHO);
    if (!st) st = write_pair(dir, name, &h, &c);
    if (!st && info)
        *info = (qg_export_info){.in_size = qg__xval_numel(&p.in), .out_size = qg__xval_numel(&p.out),
                                 .weight_bytes = g.weight_bytes, .const_bytes = g.const_bytes,
                                 .code_bytes = g.code_bytes,
                                 .scratch_bytes = scratch, .nsteps = nsteps};
    qg__text_free(&g.c), qg__text_free(&run), qg__text_free(&h), qg__text_free(&c);
    qg__xplan_free(&p);
    return st;
}
