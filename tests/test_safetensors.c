/* safetensors and tensor dicts: round trips for every dtype, the dict API, the file
 * PyTorch wrote (tools/gen_fixtures.py), and a fuzz loop of corrupted files that must
 * each be rejected with a message (or, for a harmless bit flip, load) and never crash.
 *
 * usage: test_safetensors FIXTURE   (tests/fixtures/autograd_ops.safetensors)
 * Run it under -Db_sanitize=address,undefined too. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mkdtemp, M_PI */
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compare.h"
#include "qgrad/nn.h"

static int failures;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            printf(__VA_ARGS__);                                           \
            printf(" (last error: %s)\n", qg_last_error());                \
        }                                                                  \
    } while (0)

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s/%s", tmpdir, name);
    return buf;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_file(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n) {
        printf("FAIL cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static bool same_dict(const qg_tensor_dict *a, const qg_tensor_dict *b) {
    if (qg_tensor_dict_size(a) != qg_tensor_dict_size(b)) return false;
    if (qg_tensor_dict_meta_size(a) != qg_tensor_dict_meta_size(b)) return false;
    for (int i = 0; i < qg_tensor_dict_size(a); i++) {
        if (strcmp(qg_tensor_dict_name(a, i), qg_tensor_dict_name(b, i))) return false;
        if (!tst_bitwise_equal(qg_tensor_dict_at(a, i), qg_tensor_dict_at(b, i))) return false;
    }
    for (int i = 0; i < qg_tensor_dict_meta_size(a); i++) {
        const char *va, *ka = qg_tensor_dict_meta_at(a, i, &va);
        const char *vb = qg_tensor_dict_meta(b, ka);
        if (!vb || strcmp(va, vb)) return false;
    }
    return true;
}

/* ------------------------------------------------------------- round trip */

static qg_tensor_dict *sample_dict(void) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    const float f32[6] = {1.5f, -2.25f, 3.0e-38f, -0.0f, INFINITY, 1e30f};
    const double f64[4] = {M_PI, -1e-300, 4.9e-324, 123456789.123456789};
    const int64_t i64[4] = {INT64_MIN, -1, (int64_t)1 << 53, INT64_MAX};
    const int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
    const uint8_t u8[5] = {0, 1, 127, 128, 255};
    const int8_t i8[4] = {-128, -1, 0, 127};
    const float sc = 42.5f;
    qg_tensor_dict_put(d, "f32", qg_tensor_from_data(QG_F32, 2, (int64_t[]){2, 3}, f32));
    qg_tensor_dict_put(d, "f64", qg_tensor_from_data(QG_F64, 1, (int64_t[]){4}, f64));
    qg_tensor_dict_put(d, "i64", qg_tensor_from_data(QG_I64, 2, (int64_t[]){2, 2}, i64));
    qg_tensor_dict_put(d, "i32", qg_tensor_from_data(QG_I32, 1, (int64_t[]){3}, i32));
    qg_tensor_dict_put(d, "u8", qg_tensor_from_data(QG_U8, 1, (int64_t[]){5}, u8));
    qg_tensor_dict_put(d, "i8", qg_tensor_from_data(QG_I8, 3, (int64_t[]){1, 2, 2}, i8));
    qg_tensor_dict_put(d, "scalar", qg_tensor_from_data(QG_F32, 0, NULL, &sc));
    qg_tensor_dict_put(d, "empty", qg_tensor_zeros(QG_F64, 2, (int64_t[]){0, 3}));
    qg_tensor_dict_put(d, "odd \"name\"\\ with\ttab/ünïcode", qg_tensor_ones(QG_F32, 1, (int64_t[]){1}));
    qg_tensor_dict_set_meta(d, "format", "pt");
    qg_tensor_dict_set_meta(d, "note", "quote \" backslash \\ newline \n done");
    return d;
}

static void test_round_trip(void) {
    qg_clear_error();
    qg_tensor_dict *d = sample_dict();
    CHECK(qg_tensor_dict_size(d) == 9, "size %d", qg_tensor_dict_size(d));
    const char *p1 = tmp_path("rt1.safetensors"), *p2 = tmp_path("rt2.safetensors");
    char p1c[512];
    snprintf(p1c, sizeof p1c, "%s", p1);
    CHECK(qg_safetensors_save(p1c, d) == QG_OK, "save");
    qg_tensor_dict *l = qg_safetensors_load(p1c);
    CHECK(l && same_dict(d, l), "load(save(d)) == d");

    /* the format: 8-byte aligned data, header length in the first 8 bytes */
    size_t len;
    unsigned char *b1 = read_file(p1c, &len);
    CHECK(b1 && len >= 8, "read back");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | b1[i];
    CHECK((8 + n) % 8 == 0, "data offset %llu not 8-aligned", (unsigned long long)(8 + n));
    CHECK(b1[8] == '{', "header starts with {");

    /* from memory: same result; saving again gives the same bytes */
    qg_tensor_dict *m = qg_safetensors_parse(b1, len);
    CHECK(m && same_dict(d, m), "parse == d");
    CHECK(qg_safetensors_save(p2, m) == QG_OK, "save again");
    size_t len2;
    unsigned char *b2 = read_file(p2, &len2);
    CHECK(b2 && len2 == len && !memcmp(b1, b2, len), "same bytes on second save");
    CHECK(qg_tensor_dict_meta(l, "note") && !strcmp(qg_tensor_dict_meta(l, "note"), "quote \" backslash \\ newline \n done"),
          "metadata kept");
    qg_tensor *sc = qg_tensor_dict_get(l, "scalar");
    CHECK(sc && sc->ndim == 0 && qg_tensor_item(sc) == 42.5, "0-dim");
    qg_tensor *e = qg_tensor_dict_get(l, "empty");
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 3, "empty");
    free(b1);
    free(b2);
    qg_tensor_dict_free(m);
    qg_tensor_dict_free(l);
    qg_tensor_dict_free(d);
    unlink(p1c);
    unlink(p2);

    /* a strided tensor is written in C order. The API makes only contiguous caller-owned
     * tensors, so the transposed view is set up by hand here. */
    float v[6] = {0, 1, 2, 3, 4, 5}; /* (2,3) */
    qg_tensor *t = qg_tensor_from_data(QG_F32, 2, (int64_t[]){2, 3}, v);
    t->shape[0] = 3, t->shape[1] = 2, t->strides[0] = 1, t->strides[1] = 3; /* t.T */
    d = qg_tensor_dict_new();
    qg_tensor_dict_put(d, "t", t);
    CHECK(qg_safetensors_save(p1c, d) == QG_OK, "save strided");
    l = qg_safetensors_load(p1c);
    const float want[6] = {0, 3, 1, 4, 2, 5};
    qg_tensor *r = qg_tensor_dict_get(l, "t");
    CHECK(r && r->shape[0] == 3 && r->shape[1] == 2 && !memcmp(qg_tensor_data(r), want, sizeof want),
          "strided tensor written in C order");
    qg_tensor_dict_free(l);
    qg_tensor_dict_free(d);
    unlink(p1c);

    /* an empty dict round-trips too */
    d = qg_tensor_dict_new();
    CHECK(qg_safetensors_save(p1c, d) == QG_OK, "save empty dict");
    l = qg_safetensors_load(p1c);
    CHECK(l && qg_tensor_dict_size(l) == 0, "empty dict");
    qg_tensor_dict_free(l);
    qg_tensor_dict_free(d);
    unlink(p1c);
    printf("ok round_trip\n");
}

/* ------------------------------------------------------------- dict API, save errors */

static void test_dict_api(void) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    qg_tensor *a = qg_tensor_zeros(QG_F32, 1, (int64_t[]){2});
    CHECK(qg_tensor_dict_put(d, "a", a) == QG_OK, "put");
    CHECK(qg_tensor_dict_put(d, "a", a) == QG_OK, "put same again is a no-op");
    CHECK(qg_tensor_dict_put(d, "b", a) != QG_OK, "same tensor under two names");
    CHECK(qg_tensor_dict_put(d, "b", qg_tensor_ones(QG_F64, 0, NULL)) == QG_OK, "put b");
    CHECK(qg_tensor_dict_put(d, "a", qg_tensor_ones(QG_I64, 1, (int64_t[]){3})) == QG_OK, "replace a");
    CHECK(qg_tensor_dict_size(d) == 2 && !strcmp(qg_tensor_dict_name(d, 0), "a"), "replace keeps place");
    CHECK(qg_tensor_dict_get(d, "a")->dtype == QG_I64, "replaced");
    qg_clear_error();
    CHECK(qg_tensor_dict_get(d, "nope") == NULL && strstr(qg_last_error(), "nope"), "missing key names the key");
    CHECK(qg_tensor_dict_name(d, 2) == NULL && qg_tensor_dict_at(d, -1) == NULL, "index out of range");
    CHECK(qg_tensor_dict_put(d, "c", NULL) != QG_OK, "NULL tensor");
    CHECK(qg_tensor_dict_put(d, "", qg_tensor_zeros(QG_F32, 0, NULL)) != QG_OK, "empty name (tensor freed)");
    CHECK(qg_tensor_dict_put(d, "__metadata__", qg_tensor_zeros(QG_F32, 0, NULL)) != QG_OK, "reserved name");
    CHECK(qg_tensor_dict_put(d, "bad\xff", qg_tensor_zeros(QG_F32, 0, NULL)) != QG_OK, "non-UTF-8 name");
    qg_tensor *x = qg_tensor_zeros(QG_F32, 1, (int64_t[]){2});
    qg_tensor *v = qg_detach(x); /* tape-owned view */
    CHECK(qg_tensor_dict_put(d, "v", v) != QG_OK && strstr(qg_last_error(), "clone"), "tape tensor rejected");
    qg_tape_reset(NULL);
    qg_tensor_free(x);
    CHECK(qg_tensor_dict_meta(d, "k") == NULL, "absent meta");
    CHECK(qg_tensor_dict_set_meta(d, "k", "1") == QG_OK && qg_tensor_dict_set_meta(d, "k", "2") == QG_OK, "meta");
    CHECK(!strcmp(qg_tensor_dict_meta(d, "k"), "2") && qg_tensor_dict_meta_size(d) == 1, "meta replaced");
    CHECK(qg_tensor_dict_size(d) == 2, "size after failed puts");

    /* many entries: the index grows */
    for (int i = 0; i < 300; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "layer%d.weight", i);
        qg_tensor_dict_put(d, nm, qg_tensor_full(QG_F32, 0, NULL, i));
    }
    bool all = true;
    for (int i = 0; i < 300; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "layer%d.weight", i);
        qg_tensor *t = qg_tensor_dict_get(d, nm);
        all &= t && qg_tensor_item(t) == i && !strcmp(qg_tensor_dict_name(d, i + 2), nm);
    }
    CHECK(all, "300 entries found in order");

    /* save errors: missing folder; nothing left behind */
    qg_clear_error();
    CHECK(qg_safetensors_save(tmp_path("no/such/dir/x.safetensors"), d) == QG_EIO && *qg_last_error(),
          "save into a missing folder");
    CHECK(qg_safetensors_save(NULL, d) == QG_EINVAL, "NULL path");
    CHECK(qg_safetensors_load(tmp_path("absent.safetensors")) == NULL && qg_last_status() == QG_EIO, "missing file");
    CHECK(qg_safetensors_load(tmpdir) == NULL && qg_last_status() == QG_EIO, "folder, not a file");

    /* save over an existing file replaces it whole */
    const char *p = tmp_path("over.safetensors");
    char pc[512];
    snprintf(pc, sizeof pc, "%s", p);
    write_file(pc, "garbage", 7);
    CHECK(qg_safetensors_save(pc, d) == QG_OK, "save over a file");
    qg_tensor_dict *l = qg_safetensors_load(pc);
    CHECK(l && same_dict(d, l), "replaced file loads");
    qg_tensor_dict_free(l);
    unlink(pc);
    qg_tensor_dict_free(d);
    qg_tensor_dict_free(NULL);
    printf("ok dict_api\n");
}

/* ------------------------------------------------------------- PyTorch's file */

static double at(const qg_tensor *t, int64_t i) {
    return qg_tensor_get(t, (int64_t[]){i / (t->ndim == 2 ? t->shape[1] : 1), i % (t->ndim == 2 ? t->shape[1] : 1)});
}

static void test_fixture(const char *path) {
    qg_clear_error();
    qg_tensor_dict *d = qg_safetensors_load(path);
    CHECK(d != NULL, "load %s", path);
    if (!d) return;
    CHECK(qg_tensor_dict_size(d) > 100, "%d tensors", qg_tensor_dict_size(d));
    CHECK(qg_tensor_dict_meta(d, "generator") != NULL, "metadata from the generator");
    /* _format.* tensors hold known values in every dtype (see tools/gen_fixtures.py) */
    static const struct {
        const char *name;
        qg_dtype dt;
        double v[6];
    } known[] = {
        {"_format.f32", QG_F32, {0, 1.5, -2.25, 3, 1e-20, -1e20}},
        {"_format.f64", QG_F64, {0, 1.5, -2.25, 3, 1e-300, -1e300}},
        {"_format.i64", QG_I64, {0, -1, 1099511627776.0, -1099511627776.0, 9007199254740992.0, 7}},
        {"_format.i32", QG_I32, {0, -1, 2147483647, -2147483648.0, 65536, 7}},
        {"_format.u8", QG_U8, {0, 1, 127, 128, 255, 7}},
        {"_format.i8", QG_I8, {0, -1, 127, -128, 64, 7}},
        {"_format.bool", QG_U8, {1, 0, 0, 1, 1, 0}},
    };
    for (size_t k = 0; k < sizeof known / sizeof *known; k++) {
        qg_tensor *t = qg_tensor_dict_get(d, known[k].name);
        CHECK(t && t->dtype == known[k].dt && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "%s",
              known[k].name);
        if (!t || t->ndim != 2) continue;
        for (int i = 0; i < 6; i++) {
            double want = known[k].dt == QG_F32 ? (double)(float)known[k].v[i] : known[k].v[i];
            CHECK(at(t, i) == want, "%s[%d] = %g, want %g", known[k].name, i, at(t, i), want);
        }
    }
    qg_tensor *s = qg_tensor_dict_get(d, "_format.scalar");
    CHECK(s && s->ndim == 0 && qg_tensor_item(s) == 0.25, "_format.scalar");
    qg_tensor *e = qg_tensor_dict_get(d, "_format.empty");
    CHECK(e && e->ndim == 2 && e->shape[0] == 0 && e->shape[1] == 3, "_format.empty");

    /* and it round-trips through our writer */
    const char *p = tmp_path("fixture_copy.safetensors");
    char pc[512];
    snprintf(pc, sizeof pc, "%s", p);
    CHECK(qg_safetensors_save(pc, d) == QG_OK, "save fixture copy");
    qg_tensor_dict *c = qg_safetensors_load(pc);
    CHECK(c && same_dict(d, c), "fixture round trip");
    qg_tensor_dict_free(c);
    unlink(pc);
    qg_tensor_dict_free(d);
    printf("ok fixture\n");
}

/* ------------------------------------------------------------- corrupt files */

static uint64_t rng_state = 0x5eed5eed12345678ull;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int n_tried, n_rejected, n_loaded;

enum expect { MAY_LOAD, MUST_REJECT, MUST_LOAD };

/* Parses b from memory and from a file; both must agree and follow expect. */
static bool show_messages; /* print each rejection's message (for the hand-made cases) */

static void try_bytes(const char *what, const unsigned char *b, size_t n, enum expect ex) {
    n_tried++;
    qg_clear_error();
    qg_tensor_dict *d = qg_safetensors_parse(b, n);
    bool rejected = d == NULL;
    if (rejected) {
        CHECK(*qg_last_error() != 0, "%s: rejected without a message", what);
        CHECK(qg_last_status() == QG_EFORMAT, "%s: status %d", what, (int)qg_last_status());
        if (show_messages) printf("  %-26s -> %s\n", what, qg_last_error());
    }
    qg_tensor_dict_free(d);

    const char *p = tmp_path("fuzz.safetensors");
    char pc[512];
    snprintf(pc, sizeof pc, "%s", p);
    write_file(pc, b, n);
    qg_clear_error();
    qg_tensor_dict *f = qg_safetensors_load(pc);
    CHECK((f == NULL) == rejected, "%s: load and parse disagree (%s)", what, f ? "load accepted" : "load rejected");
    if (!f) CHECK(*qg_last_error() != 0, "%s: load rejected without a message", what);
    qg_tensor_dict_free(f);
    unlink(pc);

    if (rejected) n_rejected++;
    else n_loaded++;
    if (ex == MUST_REJECT) CHECK(rejected, "%s: a corrupt file was accepted", what);
    if (ex == MUST_LOAD) CHECK(!rejected, "%s: a valid file was rejected", what);
}

/* A file from a header text and a data buffer. */
static unsigned char *make_file(const char *json, size_t jlen, const void *data, size_t dlen, size_t *n) {
    *n = 8 + jlen + dlen;
    unsigned char *b = malloc(*n);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)jlen >> (8 * i));
    memcpy(b + 8, json, jlen);
    if (dlen) memcpy(b + 8 + jlen, data, dlen);
    return b;
}

static void try_json(const char *what, const char *json, size_t dlen, enum expect ex) {
    unsigned char data[64];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)i;
    size_t n;
    unsigned char *b = make_file(json, strlen(json), data, dlen, &n);
    try_bytes(what, b, n, ex);
    free(b);
}

static void test_fuzz(void) {
    /* the valid base file: 3 small tensors and metadata, from our writer */
    qg_tensor_dict *d = qg_tensor_dict_new();
    qg_tensor_dict_put(d, "w", qg_tensor_arange(QG_F32, 0, 4, 1));
    qg_tensor_dict_put(d, "idx", qg_tensor_from_data(QG_I64, 1, (int64_t[]){2}, (int64_t[]){3, -4}));
    qg_tensor_dict_put(d, "m", qg_tensor_ones(QG_U8, 2, (int64_t[]){1, 3}));
    qg_tensor_dict_set_meta(d, "k", "v");
    const char *p = tmp_path("base.safetensors");
    char pc[512];
    snprintf(pc, sizeof pc, "%s", p);
    CHECK(qg_safetensors_save(pc, d) == QG_OK, "save base");
    qg_tensor_dict_free(d);
    size_t len;
    unsigned char *base = read_file(pc, &len);
    unlink(pc);
    if (!base) return;
    try_bytes("base", base, len, MUST_LOAD);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i];

    unsigned char *b = malloc(len);
    char what[64];
    /* every truncation */
    for (size_t k = 0; k < len; k++) {
        snprintf(what, sizeof what, "truncate to %zu", k);
        try_bytes(what, base, k, MUST_REJECT);
    }
    /* one extra byte at the end */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, base, len);
    longer[len] = 0;
    try_bytes("extra trailing byte", longer, len + 1, MUST_REJECT);
    free(longer);

    /* header length field */
    const uint64_t lens[] = {0, 1, 2, hlen - 1, hlen + 1, hlen + 8, len - 8, len - 7, 100000001ull,
                             (uint64_t)1 << 32, (uint64_t)1 << 63, UINT64_MAX, UINT64_MAX - 7};
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
        memcpy(b, base, len);
        for (int i = 0; i < 8; i++) b[i] = (unsigned char)(lens[k] >> (8 * i));
        snprintf(what, sizeof what, "header length %llu", (unsigned long long)lens[k]);
        try_bytes(what, b, len, MUST_REJECT);
    }

    /* random bit flips (1 to 3 per file) at seeded positions */
    for (int k = 0; k < 400; k++) {
        memcpy(b, base, len);
        int flips = 1 + (int)(rnd() % 3);
        for (int f = 0; f < flips; f++) {
            size_t pos = (size_t)(rnd() % len);
            b[pos] ^= (unsigned char)(1u << (rnd() % 8));
        }
        snprintf(what, sizeof what, "bit flips #%d", k);
        try_bytes(what, b, len, MAY_LOAD);
    }
    /* random bytes overwritten in the header only */
    for (int k = 0; k < 200; k++) {
        memcpy(b, base, len);
        size_t pos = 8 + (size_t)(rnd() % hlen);
        b[pos] = (unsigned char)rnd();
        snprintf(what, sizeof what, "header byte #%d", k);
        try_bytes(what, b, len, MAY_LOAD);
    }
    free(b);
    free(base);

    /* hand-made headers; the data buffer is 0..63 */
    static const struct {
        const char *what, *json;
        size_t dlen;
        enum expect ex;
    } cases[] = {
        {"valid", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, MUST_LOAD},
        {"valid, BOOL", "{\"a\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3, MUST_LOAD},
        {"valid, extra key", "{\"a\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[0,1],\"x\":1}}", 1, MUST_LOAD},
        {"valid, no tensors", "{}", 0, MUST_LOAD},
        {"valid, metadata null", "{\"__metadata__\":null}", 0, MUST_LOAD},
        {"valid, padded", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}      ", 0, MUST_LOAD},
        {"1.0 as an offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2.0]}}", 2, MAY_LOAD},
        {"valid, zero-size between",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"b\":{\"dtype\":\"F32\",\"shape\":[0,5],"
         "\"data_offsets\":[2,2]},\"c\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}",
         3, MUST_LOAD},
        {"no tensors, data left", "{}", 4, MUST_REJECT},
        {"empty header", "", 0, MUST_REJECT},
        {"spaces only", "   ", 0, MUST_REJECT},
        {"not JSON", "{\"a\":", 0, MUST_REJECT},
        {"trailing garbage", "{} x", 0, MUST_REJECT},
        {"root array", "[1,2]", 0, MUST_REJECT},
        {"root string", "\"x\"", 0, MUST_REJECT},
        {"entry not object", "{\"a\":[1]}", 0, MUST_REJECT},
        {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"missing offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, MUST_REJECT},
        {"dtype number", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"lowercase dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"shape not array", "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"negative shape, zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1,0],\"data_offsets\":[0,0]}}", 0, MUST_REJECT},
        {"fractional shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"string shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"nested shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[[1]],\"data_offsets\":[0,4]}}", 4, MUST_REJECT},
        {"9 dims", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, MUST_REJECT},
        {"shape overflow",
         "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", 8, MUST_REJECT},
        {"shape 2^53 x 2^53", "{\"a\":{\"dtype\":\"U8\",\"shape\":[9007199254740992,9007199254740992],"
                              "\"data_offsets\":[0,0]}}", 0, MUST_REJECT},
        {"shape 1e300", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,1]}}", 1, MUST_REJECT},
        {"shape 1e400", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1e400],\"data_offsets\":[0,1]}}", 1, MUST_REJECT},
        {"offsets 1 entry", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1]}}", 1, MUST_REJECT},
        {"offsets 3 entries", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, MUST_REJECT},
        {"offsets strings", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",\"1\"]}}", 1, MUST_REJECT},
        {"offsets object", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{\"0\":1}}}", 1, MUST_REJECT},
        {"negative offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1, MUST_REJECT},
        {"fractional offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0.5,1.5]}}", 1, MUST_REJECT},
        {"offset past 2^53",
         "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,18446744073709551616]}}", 1,
         MUST_REJECT},
        {"begin > end", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,1]}}", 2, MUST_REJECT},
        {"end past buffer", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, MUST_REJECT},
        {"wrong size for dtype", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, MUST_REJECT},
        {"wrong size for shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, MUST_REJECT},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],"
         "\"data_offsets\":[4,12]}}",
         12, MUST_REJECT},
        {"same range twice",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"I32\",\"shape\":[2],"
         "\"data_offsets\":[0,8]}}",
         8, MUST_REJECT},
        {"zero-size inside another",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[0],"
         "\"data_offsets\":[4,4]}}",
         8, MUST_REJECT},
        {"gap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[8,12]}}",
         12, MUST_REJECT},
        {"gap at start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, MUST_REJECT},
        {"bytes left at end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, MUST_REJECT},
        {"duplicate name",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[4,8]}}",
         8, MUST_REJECT},
        {"metadata not object", "{\"__metadata__\":[\"a\"]}", 0, MUST_REJECT},
        {"metadata number value", "{\"__metadata__\":{\"a\":1}}", 0, MUST_REJECT},
        {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, MUST_REJECT},
        {"invalid UTF-8", "{\"a\xc3\x28\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, MUST_REJECT},
        {"lone surrogate escape", "{\"a\\ud800\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         MUST_REJECT},
    };
    printf("  messages of the hand-made corrupt headers:\n");
    show_messages = true;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
        try_json(cases[k].what, cases[k].json, cases[k].dlen, cases[k].ex);

    /* a NUL byte inside the header */
    {
        const char j[] = "{}\0 ";
        size_t n;
        unsigned char *f = make_file(j, 4, NULL, 0, &n);
        try_bytes("NUL in header", f, n, MUST_REJECT);
        free(f);
    }
    /* deep nesting (cJSON's nesting limit), a huge number of dims, a long name */
    {
        size_t depth = 5000, k = 0;
        char *j = malloc(depth * 2 + 64);
        k += (size_t)sprintf(j, "{\"a\":");
        for (size_t i = 0; i < depth; i++) j[k++] = '[';
        for (size_t i = 0; i < depth; i++) j[k++] = ']';
        j[k++] = '}';
        j[k] = 0;
        try_json("deep nesting", j, 0, MUST_REJECT);
        free(j);

        size_t ndims = 100000;
        j = malloc(ndims * 2 + 128);
        k = (size_t)sprintf(j, "{\"a\":{\"dtype\":\"U8\",\"shape\":[");
        for (size_t i = 0; i < ndims; i++) k += (size_t)sprintf(j + k, i ? ",1" : "1");
        sprintf(j + k, "],\"data_offsets\":[0,1]}}");
        try_json("100000 dims", j, 1, MUST_REJECT);
        free(j);

        size_t nl = 100000;
        j = malloc(nl + 128);
        memcpy(j, "{\"", 2); /* (a literal length: gcc's -Warray-bounds misreads sprintf's) */
        k = 2;
        memset(j + k, 'n', nl);
        k += nl;
        sprintf(j + k, "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}");
        try_json("100000-byte name", j, 1, MUST_LOAD);
        free(j);
    }
    printf("ok fuzz: %d files, %d rejected, %d loaded\n", n_tried, n_rejected, n_loaded);
}

static void cleanup(void) { rmdir(tmpdir); }

static const char *fixture_path;
static void test_fixture_arg(void) { test_fixture(fixture_path); }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s tests/fixtures/autograd_ops.safetensors\n", argv[0]);
        return 2;
    }
    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/qg_safetensors_XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    atexit(cleanup);
    /* the default tape keeps its arena across resets: make it before counting */
    qg_tensor *w = qg_tensor_zeros(QG_F32, 0, NULL);
    qg_detach(w);
    qg_tape_reset(NULL);
    qg_tensor_free(w);
    int64_t live0 = qg_live_allocations();

    void (*groups[])(void) = {test_round_trip, test_dict_api, test_fixture_arg, test_fuzz};
    const int ngroups = (int)(sizeof groups / sizeof *groups);
    int passed = 0;
    fixture_path = argv[1];
    for (int g = 0; g < ngroups; g++) {
        int before = failures;
        groups[g]();
        passed += failures == before;
    }
    qg_tape_reset(NULL);
    int64_t live1 = qg_live_allocations();
    CHECK(live1 == live0, "live allocations %lld before, %lld after", (long long)live0, (long long)live1);
    if (live1 != live0) passed--;
    printf("%d passed, %d failed\n", passed, ngroups - passed);
    return failures ? 1 : 0;
}
