/* API torture test, part 2: every public function of qgrad/nn.h, qat.h, optim.h and
 * data.h with hostile arguments (NULL for each pointer, bad shapes, dtypes, sizes,
 * stale tape tensors; paths that are a directory, missing, or a FIFO). The rules of
 * part 1 (test_hostile_api.c): an error with a message, or success where PyTorch
 * succeeds, under ASan + UBSan with zero reports. FIFO cases run in forked children
 * with a 10 s deadline, so a read that blocks fails the test instead of hanging it. */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "qgrad/data.h"
#include "qgrad/optim.h"
#include "qgrad/qat.h"
#include "test_util.h"
#include "hostile.h"


static qg_qconfig preset(const char *name) {
    qg_qconfig q;
    qg_qconfig_preset(name, &q);
    return q;
}

/* ---------------------------------------------------------------- tensor dicts, safetensors */

static void test_nn_dict_null(void) {
    qg_tensor_dict *d = qg_tensor_dict_new();
    qg_tensor_dict_free(NULL);
    CHECK(qg_tensor_dict_size(NULL) == 0 && qg_tensor_dict_meta_size(NULL) == 0, "sizes of a NULL dict");
    FAILS_P(qg_tensor_dict_name(NULL, 0), no_free);
    FAILS_P(qg_tensor_dict_name(d, 0), no_free); /* empty */
    FAILS(qg_tensor_dict_at(NULL, 0));
    FAILS(qg_tensor_dict_at(d, -1));
    FAILS(qg_tensor_dict_get(NULL, "a"));
    FAILS(qg_tensor_dict_get(d, NULL));
    FAILS(qg_tensor_dict_get(d, "missing"));
    /* put: the dict takes the tensor even when the call fails */
    FAILS_ST(qg_tensor_dict_put(NULL, "a", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_tensor_dict_put(d, NULL, ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_tensor_dict_put(d, "", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_tensor_dict_put(d, "__metadata__", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_tensor_dict_put(d, "bad\xff", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_tensor_dict_put(d, "a", NULL));
    qg_tensor *x = ones(QG_F32, 1, SHAPE(2));
    FAILS_ST(qg_tensor_dict_put(d, "tape", qg_mul_scalar(x, 2))); /* an op result: not freed, not taken */
    WORKS_ST(qg_tensor_dict_put(d, "a", x));
    WORKS_ST(qg_tensor_dict_put(d, "a", x)); /* the same entry again: a no-op */
    FAILS_ST(qg_tensor_dict_put(d, "b", x)); /* already in as "a": not freed */
    WORKS_ST(qg_tensor_dict_put(d, "z", qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3))));
    FAILS(qg_tensor_dict_at(d, 2));
    FAILS(qg_tensor_dict_at(d, INT32_MIN));
    FAILS_P(qg_tensor_dict_name(d, 2), no_free);
    WORKS(qg_tensor_dict_at(d, 1));
    FAILS_ST(qg_tensor_dict_set_meta(NULL, "k", "v"));
    FAILS_ST(qg_tensor_dict_set_meta(d, NULL, "v"));
    FAILS_ST(qg_tensor_dict_set_meta(d, "k", NULL));
    WORKS_ST(qg_tensor_dict_set_meta(d, "k", ""));
    CHECK(!qg_tensor_dict_meta(NULL, "k") && !qg_tensor_dict_meta(d, NULL) && !qg_tensor_dict_meta(d, "nope"),
          "dict_meta of NULL or absent keys");
    const char *v = "x";
    FAILS_P(qg_tensor_dict_meta_at(NULL, 0, &v), no_free);
    FAILS_P(qg_tensor_dict_meta_at(d, 1, &v), no_free);
    FAILS_P(qg_tensor_dict_meta_at(d, -1, &v), no_free);
    WORKS_P(qg_tensor_dict_meta_at(d, 0, NULL), no_free);
    /* parse */
    unsigned char junk[16];
    memset(junk, 0xff, sizeof junk);
    FAILS_P(qg_safetensors_parse(NULL, 100), dict_free);
    FAILS_P(qg_safetensors_parse(NULL, 0), dict_free);
    FAILS_P(qg_safetensors_parse(junk, 0), dict_free);
    FAILS_P(qg_safetensors_parse(junk, sizeof junk), dict_free);
    FAILS_ST(qg_safetensors_save(NULL, d));
    FAILS_ST(qg_safetensors_save("/tmp/hostile_api_never.safetensors", NULL));
    FAILS_P(qg_safetensors_load(NULL), dict_free);
    qg_tape_reset(NULL);
    qg_tensor_dict_free(d);
}

/* ---------------------------------------------------------------- modules */

typedef struct {
    qg_module base;
    int *freed;
} probe_mod;
static void probe_free(qg_module *m) { (*((probe_mod *)m)->freed)++; }
static const qg_module_type probe_type = {.name = "Probe", .size = sizeof(probe_mod), .free = probe_free};
static const qg_module_type tiny_type = {.name = "Tiny", .size = 4};
static const qg_module_type noname_type = {.size = sizeof(qg_module)};
static int visits;
static void visit(qg_module *m, const char *path, void *ctx) {
    (void)m, (void)ctx;
    visits += path != NULL;
}

static void test_nn_module_null(void) {
    FAILS_P(qg_module_new(NULL), mod_free);
    FAILS_P(qg_module_new(&tiny_type), mod_free); /* smaller than qg_module */
    FAILS_P(qg_module_new(&noname_type), mod_free);
    qg_module_free(NULL);
    int freed = 0;
    qg_module *m = qg_module_new(&probe_type);
    ((probe_mod *)m)->freed = &freed;
    FAILS_ST(qg_module_add_param(NULL, "w", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_add_param(m, NULL, ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_add_param(m, "", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_add_param(m, "a.b", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_add_param(m, "i", qg_tensor_zeros(QG_I64, 1, SHAPE(2)))); /* torch: only floating tensors */
    qg_tensor *x = ones(QG_F32, 2, SHAPE(2, 2));
    FAILS_ST(qg_module_add_param(m, "t", qg_mul_scalar(x, 1)));
    WORKS_ST(qg_module_add_param(m, "w", ones(QG_F32, 1, SHAPE(2))));
    WORKS_ST(qg_module_add_param(m, "none", NULL)); /* register_parameter(name, None) */
    FAILS_ST(qg_module_add_param(m, "w", ones(QG_F32, 1, SHAPE(2)))); /* taken */
    FAILS_ST(qg_module_add_buffer(NULL, "b", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_add_buffer(m, NULL, ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_add_buffer(m, "w", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_add_buffer(m, "t", qg_mul_scalar(x, 1)));
    WORKS_ST(qg_module_add_buffer(m, "b", qg_tensor_zeros(QG_I64, 1, SHAPE(0))));
    WORKS_ST(qg_module_add_buffer(m, "nb", NULL));
    FAILS_ST(qg_module_add_child(NULL, "c", qg_nn_relu_new()));
    FAILS_ST(qg_module_add_child(m, NULL, qg_nn_relu_new()));
    FAILS_ST(qg_module_add_child(m, "a.b", qg_nn_relu_new()));
    FAILS_ST(qg_module_add_child(m, "c", NULL));
    FAILS_ST(qg_module_add_child(m, "self", m));
    CHECK(freed == 0, "a refused add_child of the module itself did not free it");
    qg_module *relu = qg_nn_relu_new();
    WORKS_ST(qg_module_add_child(m, "c", relu));
    FAILS_ST(qg_module_add_child(m, "c2", relu)); /* already a child: refused, and not freed */
    qg_module *outer = qg_sequential_new();
    WORKS_ST(qg_sequential_add(outer, "inner", qg_sequential_new()));
    FAILS_ST(qg_module_add_child(qg_module_child(outer, "inner"), "loop", outer)); /* a cycle */
    FAILS_ST(qg_module_set_output_hook(NULL, "h", qg_nn_identity_new()));
    FAILS_ST(qg_module_set_output_hook(m, NULL, qg_nn_identity_new()));
    FAILS_ST(qg_module_set_output_hook(m, "h", NULL));
    FAILS_ST(qg_module_buffer_set_flags(NULL, "b", QG_BUFFER_RESIZABLE));
    FAILS_ST(qg_module_buffer_set_flags(m, NULL, QG_BUFFER_RESIZABLE));
    FAILS_ST(qg_module_buffer_set_flags(m, "w", QG_BUFFER_RESIZABLE)); /* a parameter */
    FAILS_ST(qg_module_buffer_set_flags(m, "b", 0x80u));                /* unknown flag */
    WORKS_ST(qg_module_buffer_set_flags(m, "b", QG_BUFFER_RESIZABLE));
    CHECK(!qg_module_param(NULL, "w") && !qg_module_param(m, NULL) && !qg_module_param(m, "none") &&
              !qg_module_buffer(NULL, "b") && !qg_module_buffer(m, NULL) && !qg_module_child(NULL, "c") &&
              !qg_module_child(m, NULL) && qg_module_child(m, "c") == relu,
          "lookups of NULL or absent names");
    char longp[600];
    memset(longp, 'a', sizeof longp - 1), longp[sizeof longp - 1] = 0;
    FAILS_P(qg_module_get(NULL, ""), no_free);
    FAILS_P(qg_module_get(m, NULL), no_free);
    FAILS_P(qg_module_get(m, "nope"), no_free);
    FAILS_P(qg_module_get(m, "c..x"), no_free);
    FAILS_P(qg_module_get(m, "c."), no_free);
    FAILS_P(qg_module_get(m, longp), no_free);
    WORKS_P(qg_module_get(m, ""), no_free);
    FAILS_P(qg_module_replace(NULL, "c", relu), no_free);
    FAILS_P(qg_module_replace(m, NULL, relu), no_free);
    FAILS_P(qg_module_replace(m, "", relu), no_free);
    FAILS_P(qg_module_replace(m, "nope", relu), no_free);
    FAILS_P(qg_module_replace(m, "c", NULL), no_free);
    FAILS_P(qg_module_replace(m, "c", relu), no_free); /* already there: the caller would free a live child */
    FAILS_P(qg_module_replace(m, "c", m), no_free);    /* a cycle */
    memcpy(longp, "c.", 2);
    FAILS_P(qg_module_replace(m, longp, relu), no_free);
    FAILS_P(qg_module_remove_child(NULL, "c"), mod_free);
    FAILS_P(qg_module_remove_child(m, NULL), mod_free);
    FAILS_P(qg_module_remove_child(m, "w"), mod_free); /* a parameter, not a child */
    FAILS_ST(qg_module_set_param(NULL, "w", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_set_param(m, NULL, ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_set_param(m, "nope", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_set_param(m, "b", ones(QG_F32, 1, SHAPE(2)))); /* a buffer */
    FAILS_ST(qg_module_set_param(m, "w", qg_mul_scalar(x, 1)));
    FAILS_ST(qg_module_set_param(m, "w", qg_tensor_zeros(QG_I32, 1, SHAPE(2))));
    WORKS_ST(qg_module_set_param(m, "w", ones(QG_F64, 1, SHAPE(5))));
    FAILS_ST(qg_module_set_buffer(NULL, "b", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_set_buffer(m, NULL, ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_set_buffer(m, "w", ones(QG_F32, 1, SHAPE(2))));
    FAILS_ST(qg_module_set_buffer(m, "b", qg_mul_scalar(x, 1)));
    WORKS_ST(qg_module_set_buffer(m, "b", NULL));
    CHECK(!qg_module_is(NULL, "Probe") && !qg_module_is(m, NULL) && qg_module_is(m, "Probe"), "module_is");
    FAILS(qg_module_forward(NULL, x));
    FAILS(qg_module_forward(m, x)); /* a type without forward */
    qg_module *lin = qg_nn_linear_new(3, 2, NULL, NULL);
    FAILS(qg_module_forward(lin, NULL));
    FAILS(qg_module_forward(lin, x)); /* 2 features for 3 */
    qg_tensor *z = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 3));
    WORKS(qg_module_forward(lin, z));
    qg_module_train(NULL, true);
    qg_module_eval(NULL);
    qg_module_zero_grad(NULL);
    qg_module_eval(m);
    CHECK(!m->training && !relu->training, "eval recurses");
    FAILS_ST(qg_module_to(NULL, QG_F64));
    FAILS_ST(qg_module_to(lin, QG_I64)); /* torch: only floating dtypes */
    FAILS_ST(qg_module_to(lin, (qg_dtype)99));
    WORKS_ST(qg_module_to(m, QG_F64));
    CHECK(qg_module_buffer(m, "b") == NULL, "module_to keeps a NULL buffer slot");
    FAILS_P(qg_module_parameters(NULL), list_free);
    FAILS_P(qg_module_buffers(NULL), list_free);
    WORKS_P(qg_module_parameters(m), list_free);
    qg_tensor_list_free(NULL);
    qg_module_apply(NULL, visit, NULL);
    qg_module_apply(m, NULL, NULL);
    qg_module_apply(m, visit, NULL);
    CHECK(visits == 2, "apply visits m and its child: %d", visits);
    /* state dicts */
    FAILS_P(qg_module_state_dict(NULL), dict_free);
    qg_tensor_dict *sd = qg_module_state_dict(lin);
    FAILS_ST(qg_module_load_state_dict(NULL, sd, true));
    FAILS_ST(qg_module_load_state_dict(lin, NULL, true));
    qg_tensor_dict *bad = qg_tensor_dict_new();
    qg_tensor_dict_put(bad, "weight", ones(QG_F32, 2, SHAPE(3, 2)));
    FAILS_ST(qg_module_load_state_dict(lin, bad, false)); /* shape mismatch */
    qg_tensor_dict_put(bad, "weight", ones(QG_F64, 2, SHAPE(2, 3)));
    FAILS_ST(qg_module_load_state_dict(lin, bad, false)); /* dtype mismatch */
    qg_tensor_dict_put(bad, "weight", ones(QG_F32, 2, SHAPE(2, 3)));
    FAILS_ST(qg_module_load_state_dict(lin, bad, true)); /* bias missing */
    WORKS_ST(qg_module_load_state_dict(lin, bad, false));
    qg_tensor_dict_put(bad, "extra", ones(QG_F32, 1, SHAPE(1)));
    FAILS_ST(qg_module_load_state_dict(lin, bad, true));
    WORKS_ST(qg_module_load_state_dict(lin, sd, true));
    FAILS_ST(qg_module_save(NULL, "/tmp/hostile_api_never.safetensors"));
    FAILS_ST(qg_module_save(lin, NULL));
    FAILS_ST(qg_module_load(NULL, "/tmp/hostile_api_never.safetensors", true));
    FAILS_ST(qg_module_load(lin, NULL, true));
    qg_tensor_dict_free(sd), qg_tensor_dict_free(bad);
    qg_tape_reset(NULL);
    qg_module_free(m);
    CHECK(freed == 1, "the probe's free ran once: %d", freed);
    qg_module_free(outer), qg_module_free(lin);
    qg_tensor_free(x), qg_tensor_free(z);
}

/* ---------------------------------------------------------------- layers */

static void test_nn_layers_null(void) {
    qg_module *relu = qg_nn_relu_new(), *seq = qg_sequential_new();
    FAILS_ST(qg_sequential_append(NULL, qg_nn_relu_new()));
    FAILS_ST(qg_sequential_add(NULL, "a", qg_nn_relu_new()));
    FAILS_ST(qg_sequential_add(relu, "a", relu)); /* not a Sequential, and relu stays */
    FAILS_ST(qg_sequential_status(NULL));
    FAILS_ST(qg_sequential_status(relu));
    WORKS_ST(qg_sequential_status(seq));
    FAILS_ST(qg_sequential_add(seq, NULL, qg_nn_relu_new())); /* recorded: the Sequential's first failure */
    FAILS_ST(qg_sequential_add(seq, "x", NULL)); /* a failed constructor: recorded */
    FAILS_ST(qg_sequential_status(seq));
    FAILS(qg_module_forward(seq, NULL));
    qg_module *s2 = qg_sequential_new();
    FAILS_ST(qg_sequential_append(s2, NULL));
    FAILS_ST(qg_sequential_append(s2, s2));
    qg_module_free(s2);
    FAILS_P(qg_sequential_of(-1, NULL), mod_free);
    FAILS_P(qg_sequential_of(2, NULL), mod_free);
    FAILS_P(qg_sequential_of(2, ((qg_named_module[]){{"a", qg_nn_relu_new()}, {"b", NULL}})), mod_free);
    FAILS_P(qg_sequential_of(2, ((qg_named_module[]){{"a", qg_nn_relu_new()}, {"a", qg_nn_relu_new()}})), mod_free);
    qg_module *twice = qg_nn_relu_new(); /* the same module under two names: refused, freed once */
    FAILS_P(qg_sequential_of(2, ((qg_named_module[]){{"a", twice}, {"b", twice}})), mod_free);
    WORKS_P(qg_sequential_of(0, NULL), mod_free);
    WORKS_P(qg_sequential_of(1, ((qg_named_module[]){{NULL, qg_nn_identity_new()}})), mod_free);
    qg_module_free(relu), qg_module_free(seq);
    /* constructors: negative, overflowing and zero sizes */
    qg_rng g;
    qg_rng_init(&g, 3);
    FAILS_P(qg_nn_linear_new(-1, 3, NULL, NULL), mod_free);
    FAILS_P(qg_nn_linear_new(3, -1, NULL, &g), mod_free);
    FAILS_P(qg_nn_linear_new(BIG, BIG, NULL, NULL), mod_free);
    FAILS_P(qg_nn_linear_new(INT64_C(1) << 40, INT64_C(1) << 40, NULL, NULL), mod_free);
    /* PyTorch makes Linear(3, 0), Linear(0, 3), BatchNorm1d(0); qgrad wants positive sizes */
    ANSWERS_P(qg_nn_linear_new(3, 0, NULL, NULL), mod_free);
    ANSWERS_P(qg_nn_linear_new(0, 3, &(qg_linear_opts){.no_bias = true}, &g), mod_free);
    qg_conv_opts bad_conv[] = {{.stride = {-1, 1}}, {.padding = {0, -1}}, {.dilation = {-2, 1}}, {.groups = -1},
                               {.groups = 4}, {.stride = {1, -5}}};
    for (int k = 0; k < N_(bad_conv); k++) {
        FAILS_P(qg_nn_conv2d_new(6, 6, 3, 3, &bad_conv[k], NULL), mod_free);
        FAILS_P(qg_nn_conv1d_new(6, 6, 3, &bad_conv[k], NULL), mod_free);
    }
    FAILS_P(qg_nn_conv2d_new(-1, 4, 3, 3, NULL, NULL), mod_free);
    FAILS_P(qg_nn_conv2d_new(2, 4, 0, 3, NULL, NULL), mod_free);
    FAILS_P(qg_nn_conv2d_new(2, 4, 3, -3, NULL, NULL), mod_free);
    FAILS_P(qg_nn_conv2d_new(BIG, BIG, 3, 3, NULL, NULL), mod_free);
    FAILS_P(qg_nn_conv2d_new(1 << 20, 1 << 20, 1 << 20, 1 << 20, NULL, NULL), mod_free);
    FAILS_P(qg_nn_conv1d_new(2, -4, 3, NULL, NULL), mod_free);
    FAILS_P(qg_nn_conv1d_new(2, 4, 0, NULL, NULL), mod_free);
    FAILS_P(qg_nn_conv1d_new(BIG, 4, 3, NULL, NULL), mod_free);
    WORKS_P(qg_nn_conv2d_new(2, 4, 3, 3, &(qg_conv_opts){.groups = 2, .no_bias = true}, &g), mod_free);
    qg_bn_opts bad_bn[] = {{.eps = QG_SET(-1)}, {.eps = QG_SET(NAN)}, {.momentum = QG_SET(1.5)}, {.momentum = QG_SET(NAN)}};
    for (int k = 0; k < N_(bad_bn); k++) {
        FAILS_P(qg_nn_batchnorm1d_new(3, &bad_bn[k]), mod_free);
        FAILS_P(qg_nn_batchnorm2d_new(3, &bad_bn[k]), mod_free);
    }
    FAILS_P(qg_nn_batchnorm1d_new(-1, NULL), mod_free);
    FAILS_P(qg_nn_batchnorm2d_new(BIG, NULL), mod_free);
    ANSWERS_P(qg_nn_batchnorm1d_new(0, NULL), mod_free);
    WORKS_P(qg_nn_batchnorm2d_new(3, &(qg_bn_opts){.no_affine = true, .no_track = true}), mod_free);
    WORKS_P(qg_nn_relu_new(), mod_free);
    WORKS_P(qg_nn_relu6_new(), mod_free);
    WORKS_P(qg_nn_identity_new(), mod_free);
    FAILS_P(qg_nn_hardtanh_new(2, -2), mod_free);
    FAILS_P(qg_nn_hardtanh_new(NAN, 1), mod_free);
    qg_module *fl = qg_nn_flatten_new(5, -1), *lin = qg_nn_linear_new(3, 2, NULL, NULL);
    qg_tensor *x = ones(QG_F32, 2, SHAPE(2, 3));
    FAILS(qg_module_forward(fl, x)); /* torch: dim 5 out of range, at forward */
    qg_pool_opts bad_pool[] = {{.stride = {-1, 1}}, {.padding = {-1, 0}}, {.dilation = {-1, 1}}};
    for (int k = 0; k < N_(bad_pool); k++) {
        FAILS_P(qg_nn_maxpool2d_new(2, 2, &bad_pool[k]), mod_free);
        if (k < 2) FAILS_P(qg_nn_avgpool2d_new(2, 2, &bad_pool[k]), mod_free);
    }
    FAILS_P(qg_nn_maxpool2d_new(0, 2, NULL), mod_free);
    FAILS_P(qg_nn_avgpool2d_new(2, -1, NULL), mod_free);
    WORKS_P(qg_nn_avgpool2d_new(2, 2, &(qg_pool_opts){.divisor_override = -1}), mod_free); /* torch: only 0 is refused */
    FAILS_P(qg_nn_adaptive_avgpool2d_new(-1, 1), mod_free);
    qg_module *huge = qg_nn_adaptive_avgpool2d_new(1, BIG); /* torch: made; its forward fails */
    qg_tensor *x4 = ones(QG_F32, 4, SHAPE(1, 1, 2, 2));
    CHECK(huge != NULL, "AdaptiveAvgPool2d((1, 2^62)): %s", qg_last_error());
    FAILS(qg_module_forward(huge, x4));
    qg_module_free(huge), qg_tensor_free(x4);
    WORKS_P(qg_nn_adaptive_avgpool2d_new(1, 1), mod_free);
    FAILS_P(qg_nn_dropout_new(-0.5, NULL), mod_free);
    FAILS_P(qg_nn_dropout_new(1.5, NULL), mod_free);
    FAILS_P(qg_nn_dropout_new(NAN, NULL), mod_free);
    WORKS_P(qg_nn_dropout_new(1, &g), mod_free);
    qg_layer_info info;
    FAILS_ST(qg_nn_layer_info(NULL, &info));
    FAILS_ST(qg_nn_layer_info(lin, NULL));
    WORKS_ST(qg_nn_layer_info(fl, &info)); /* Flatten: its dims */
    CHECK(info.start_dim == 5 && info.end_dim == -1, "Flatten's layer info");
    qg_module *plain = qg_nn_relu_new();
    FAILS_ST(qg_nn_layer_info(plain, &info)); /* nothing to tell */
    qg_module_free(plain);
    WORKS_ST(qg_nn_layer_info(lin, &info));
    qg_tape_reset(NULL);
    qg_module_free(fl), qg_module_free(lin);
    qg_tensor_free(x);
}

/* ---------------------------------------------------------------- qat */

static void test_qat_null(void) {
    qg_tensor *x = qg_tensor_randn(NULL, QG_F32, 2, SHAPE(3, 4)), *xi = qg_tensor_zeros(QG_I64, 2, SHAPE(3, 4));
    qg_tensor *z = qg_tensor_zeros(QG_F32, 2, SHAPE(0, 4)), *sc3 = qg_tensor_full(QG_F32, 1, SHAPE(3), 0.1);
    qg_tensor *zp3 = qg_tensor_zeros(QG_I32, 1, SHAPE(3)), *sc4 = qg_tensor_full(QG_F32, 1, SHAPE(4), 0.1);
    qg_tensor *sci = qg_tensor_ones(QG_I64, 1, SHAPE(3)), *zp64 = qg_tensor_zeros(QG_F64, 1, SHAPE(3));
    qg_tensor *s1 = qg_tensor_full(QG_F32, 1, SHAPE(1), 0.1), *z1 = qg_tensor_zeros(QG_F32, 1, SHAPE(1));
    qg_tensor *s2 = qg_tensor_full(QG_F32, 1, SHAPE(2), 0.1), *zf3 = qg_tensor_zeros(QG_F32, 1, SHAPE(3));
    FAILS(qg_fake_quantize_per_tensor(NULL, 0.1, 0, 0, 255));
    FAILS(qg_fake_quantize_per_tensor(xi, 0.1, 0, 0, 255));
    FAILS(qg_fake_quantize_per_tensor(x, 0.1, 0, 255, 0));
    FAILS(qg_fake_quantize_per_tensor(x, 0.1, 300, 0, 255));
    FAILS(qg_fake_quantize_per_tensor(x, 0.1, 0, INT64_MIN, INT64_MAX));
    WORKS(qg_fake_quantize_per_tensor(z, 0.1, 0, 0, 255));
    FAILS(qg_fake_quantize_per_channel(NULL, sc3, zp3, 0, -128, 127));
    FAILS(qg_fake_quantize_per_channel(x, NULL, zp3, 0, -128, 127));
    FAILS(qg_fake_quantize_per_channel(x, sc3, NULL, 0, -128, 127));
    FAILS(qg_fake_quantize_per_channel(x, sc3, zp3, 2, -128, 127));
    FAILS(qg_fake_quantize_per_channel(x, sc3, zp3, -3, -128, 127));
    FAILS(qg_fake_quantize_per_channel(x, sc4, zp3, 0, -128, 127)); /* 4 scales for 3 channels */
    FAILS(qg_fake_quantize_per_channel(x, sc3, zp3, 1, -128, 127));
    FAILS(qg_fake_quantize_per_channel(x, sci, zp3, 0, -128, 127));
    FAILS(qg_fake_quantize_per_channel(x, sc3, zp3, 0, 127, -128));
    FAILS(qg_fake_quantize_per_channel(xi, sc3, zp3, 0, -128, 127));
    WORKS(qg_fake_quantize_per_channel(x, sc3, zp3, -2, -128, 127));
    WORKS(qg_fake_quantize_per_channel(x, sc4, sc4, 1, -128, 127)); /* a float zero point */
    FAILS(qg_fake_quantize_learnable_per_tensor(NULL, s1, z1, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_tensor(x, NULL, z1, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_tensor(x, s1, NULL, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_tensor(x, s2, z1, 0, 255, 1)); /* per tensor: (1) */
    FAILS(qg_fake_quantize_learnable_per_tensor(x, s1, z1, 255, 0, 1));
    FAILS(qg_fake_quantize_learnable_per_tensor(xi, s1, z1, 0, 255, 1));
    WORKS(qg_fake_quantize_learnable_per_tensor(z, s1, z1, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_channel(NULL, sc3, zf3, 0, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_channel(x, NULL, zf3, 0, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_channel(x, sc3, NULL, 0, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_channel(x, sc3, zf3, 5, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_channel(x, sc4, zf3, 0, 0, 255, 1));
    FAILS(qg_fake_quantize_learnable_per_channel(x, sc3, zf3, 0, 255, 0, 1));
    WORKS(qg_fake_quantize_learnable_per_channel(x, sc3, zf3, 0, 0, 255, 1));
    /* qparams */
    float mn[2] = {-1, 0}, mx[2] = {1, 2}, bad_mx[2] = {-2, NAN}, sc[2];
    int32_t zp[2];
    FAILS_ST(qg_qparams_observer(-1, mn, mx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, 1e-7f, sc, zp));
    FAILS_ST(qg_qparams_observer(1, NULL, mx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, 1e-7f, sc, zp));
    FAILS_ST(qg_qparams_observer(1, mn, NULL, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, 1e-7f, sc, zp));
    FAILS_ST(qg_qparams_observer(1, mn, mx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, 1e-7f, NULL, zp));
    FAILS_ST(qg_qparams_observer(1, mn, mx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 0, 255, 1e-7f, sc, NULL));
    FAILS_ST(qg_qparams_observer(2, mn, bad_mx, QG_PER_CHANNEL_AFFINE, QG_QINT8, false, -128, 127, 1e-7f, sc, zp));
    FAILS_ST(qg_qparams_observer(1, mn, mx, QG_PER_TENSOR_AFFINE, QG_QUINT8, false, 255, 0, 1e-7f, sc, zp));
    FAILS_ST(qg_qparams_observer(1, mn, mx, (qg_qscheme)99, QG_QUINT8, false, 0, 255, 1e-7f, sc, zp));
    FAILS_ST(qg_qparams_observer(1, mn, mx, QG_PER_TENSOR_SYMMETRIC, (qg_qdtype)99, false, 0, 255, 1e-7f, sc, zp));
    WORKS_ST(qg_qparams_observer(0, NULL, NULL, QG_PER_CHANNEL_AFFINE, QG_QINT8, false, -128, 127, 1e-7f, sc, zp));
    FAILS_ST(qg_qparams_choose(-1, mn, mx, false, 0, 255, sc, zp));
    FAILS_ST(qg_qparams_choose(1, NULL, mx, false, 0, 255, sc, zp));
    FAILS_ST(qg_qparams_choose(1, mn, NULL, false, 0, 255, sc, zp));
    FAILS_ST(qg_qparams_choose(1, mn, mx, false, 0, 255, NULL, zp));
    FAILS_ST(qg_qparams_choose(1, mn, mx, false, 0, 255, sc, NULL));
    FAILS_ST(qg_qparams_choose(2, mn, bad_mx, false, 0, 255, sc, zp));
    FAILS_ST(qg_qparams_choose(1, mn, mx, false, 0, INT64_C(1) << 40, sc, zp));
    WORKS_ST(qg_qparams_choose(2, mn, mx, true, -128, 127, sc, zp));
    int64_t qmin = 0, qmax = 0;
    qg_quant_range(QG_QINT8, false, 0, 0, NULL, NULL);
    qg_quant_range((qg_qdtype)99, true, 0, 0, &qmin, &qmax);
    CHECK(qmin < qmax, "quant_range of a bad dtype: [%lld, %lld]", (long long)qmin, (long long)qmax);
    /* fused observe + fake-quant */
    qg_tensor *on = qg_tensor_ones(QG_I64, 1, SHAPE(1)), *rmin = qg_tensor_full(QG_F32, 0, NULL, INFINITY);
    qg_tensor *rmax = qg_tensor_full(QG_F32, 0, NULL, -INFINITY), *fsc = qg_tensor_ones(QG_F32, 1, SHAPE(1));
    qg_tensor *fzp = qg_tensor_zeros(QG_I32, 1, SHAPE(1)), *fzpf = qg_tensor_zeros(QG_F32, 1, SHAPE(1));
    qg_tensor *ptrs[7] = {x, on, on, rmin, rmax, fsc, fzp};
    for (int k = 0; k < 7; k++) {
        qg_tensor *p[7];
        memcpy(p, ptrs, sizeof p);
        p[k] = NULL;
        qg_clear_error();
        qg_tensor *r = qg_fused_moving_avg_obs_fake_quant(p[0], p[1], p[2], p[3], p[4], p[5], p[6], 0.01, 0, 255, 0, false, false);
        CHECK(!r && *qg_last_error(), "fused with argument %d NULL: %s", k, qg_last_error());
    }
#define FUSED(xx, zpp, avg, lo, hi, ax, pc) qg_fused_moving_avg_obs_fake_quant(xx, on, on, rmin, rmax, fsc, zpp, avg, lo, hi, ax, pc, false)
    FAILS(FUSED(xi, fzp, 0.01, 0, 255, 0, false));
    FAILS(FUSED(x, fzpf, 0.01, 0, 255, 0, false)); /* zero point must be an integer tensor */
    FAILS(FUSED(x, fzp, 0.01, 255, 0, 0, false));
    FAILS(FUSED(x, fzp, 0.01, 0, 255, 5, true));
    FAILS(FUSED(x, fzp, 0.01, 0, 255, -3, true));
    FAILS(FUSED(x, fzp, 0.01, 0, 255, 0, true)); /* per channel with 0-d running stats */
    WORKS(FUSED(x, fzp, 0.01, 0, 255, 0, false));
    WORKS(FUSED(z, fzp, 0.01, 0, 255, 0, false));
#undef FUSED
    /* qconfigs, specs, modules */
    qg_qconfig qc;
    FAILS_ST(qg_qconfig_preset(NULL, &qc));
    FAILS_ST(qg_qconfig_preset("nope", &qc));
    FAILS_ST(qg_qconfig_preset("fbgemm", NULL));
    FAILS_ST(qg_qconfig_nbit(1, 8, &qc));
    FAILS_ST(qg_qconfig_nbit(8, 17, &qc));
    FAILS_ST(qg_qconfig_nbit(8, 8, NULL));
    WORKS_ST(qg_qconfig_nbit(2, 16, &qc));
    qg_fq_spec sig = qg_fq_spec_fixed_sigmoid(), th = qg_fq_spec_fixed_tanh();
    CHECK(sig.kind == QG_FQ_FIXED && sig.fixed_scale == 1.0 / 256 && th.fixed_zero_point == 128, "fixed specs");
    qc = preset("fbgemm");
    qg_fq_spec bad[5] = {qc.activation, qc.activation, qc.activation, qc.activation, qc.weight};
    bad[0].kind = (qg_fq_kind)99, bad[1].dtype = (qg_qdtype)99, bad[2].qscheme = (qg_qscheme)99;
    bad[3].observer = (qg_observer_kind)99, bad[4].ch_axis = -9;
    for (int k = 0; k < 4; k++) {
        FAILS_P(qg_fake_quant_new(&bad[k]), mod_free);
        FAILS_P(qg_observer_new(&bad[k]), mod_free);
    }
    qg_module *fq9 = qg_fake_quant_new(&bad[4]); /* ch_axis -9: made, as PyTorch's; its forward fails */
    CHECK(fq9 != NULL, "fake_quant_new(ch_axis -9): %s", qg_last_error());
    FAILS(qg_module_forward(fq9, x));
    qg_module_free(fq9);
    qg_clear_error();
    qg_module *dflt = qg_observer_new(NULL);
    CHECK(dflt || *qg_last_error(), "observer_new(NULL): a default observer or an error");
    qg_module_free(dflt);
    qg_clear_error();
    dflt = qg_fake_quant_new(NULL);
    CHECK(dflt || *qg_last_error(), "fake_quant_new(NULL): a default fake-quant or an error");
    qg_module_free(dflt);
    qg_module *obs = qg_observer_new(&qc.activation), *relu = qg_nn_relu_new();
    qg_tensor *os = NULL, *oz = NULL;
    FAILS_ST(qg_observer_calculate_qparams(NULL, &os, &oz));
    FAILS_ST(qg_observer_calculate_qparams(obs, NULL, &oz));
    FAILS_ST(qg_observer_calculate_qparams(obs, &os, NULL));
    FAILS_ST(qg_observer_calculate_qparams(relu, &os, &oz));
    WORKS_ST(qg_observer_calculate_qparams(obs, &os, &oz)); /* never observed: 1, 0 */
    qg_tensor_free(os), qg_tensor_free(oz);
    os = oz = NULL;
    /* hostile edits of the quantization buffers the kernels read as float32 */
    FAILS_ST(qg_module_set_buffer(obs, "eps", NULL));
    FAILS_ST(qg_module_set_buffer(obs, "eps", qg_tensor_zeros(QG_I64, 1, SHAPE(1))));
    FAILS_ST(qg_module_set_buffer(obs, "eps", qg_tensor_zeros(QG_F32, 1, SHAPE(0))));
    FAILS_ST(qg_module_set_buffer(obs, "min_val", qg_tensor_zeros(QG_F64, 0, NULL)));
    FAILS_ST(qg_module_set_buffer(obs, "max_val", qg_tensor_zeros(QG_F32, 1, SHAPE(5))));
    WORKS_ST(qg_module_set_buffer(obs, "max_val", qg_tensor_full(QG_F32, 0, NULL, -INFINITY)));
    WORKS(qg_module_forward(obs, x));
    WORKS_ST(qg_observer_calculate_qparams(obs, &os, &oz));
    qg_tensor_free(os), qg_tensor_free(oz);
    qg_module *fq = qg_fake_quant_new(&qc.weight); /* per channel: scale and zero_point lengths agree */
    WORKS(qg_module_forward(fq, x));
    FAILS_ST(qg_module_set_buffer(fq, "scale", qg_tensor_ones(QG_F32, 1, SHAPE(7))));
    FAILS_ST(qg_module_set_buffer(fq, "zero_point", qg_tensor_zeros(QG_I32, 1, SHAPE(7))));
    WORKS(qg_module_forward(fq, x));
    qg_module_free(fq);
    qg_enable_fake_quant(NULL, true);
    qg_enable_observer(NULL, false);
    qg_module_set_path(NULL, "p");
    qg_module_set_path(relu, NULL);
    qg_module_set_path(relu, "");
    qg_freeze_bn_stats(NULL);
    qg_update_bn_stats(NULL);
    WORKS_P(qg_quant_stub_new(), mod_free);
    WORKS_P(qg_dequant_stub_new(), mod_free);
    qg_qat_args la = {.in = 4, .out = 2};
    FAILS_P(qg_qat_new(NULL, &la, &qc, NULL), mod_free);
    FAILS_P(qg_qat_new("qat.Linear", NULL, &qc, NULL), mod_free);
    FAILS_P(qg_qat_new("qat.Linear", &la, NULL, NULL), mod_free);
    FAILS_P(qg_qat_new("qat.Linear", &(qg_qat_args){.in = -4, .out = 2}, &qc, NULL), mod_free);
    FAILS_P(qg_qat_new("qat.Linear", &(qg_qat_args){.in = BIG, .out = BIG}, &qc, NULL), mod_free);
    FAILS_P(qg_qat_new("qat.Conv2d", &(qg_qat_args){.in = 2, .out = 2, .kernel = {0, 3}}, &qc, NULL), mod_free);
    FAILS_P(qg_qat_new("intrinsic.qat.ConvBn2d", &(qg_qat_args){.in = 2, .out = 2, .kernel = {3, 3}, .eps = QG_SET(-1)}, &qc, NULL), mod_free);
    WORKS_P(qg_qat_new("qat.Linear", &la, &qc, NULL), mod_free);
    qg_module *lin = qg_nn_linear_new(4, 2, NULL, NULL);
    FAILS_P(qg_qat_from_float(NULL, &qc), mod_free);
    FAILS_P(qg_qat_from_float(lin, NULL), mod_free);
    FAILS_P(qg_qat_from_float(relu, &qc), mod_free); /* relu stays the caller's */
    FAILS_P(qg_qat_dynamic_linear_from_float(NULL, &qc), mod_free);
    FAILS_P(qg_qat_dynamic_linear_from_float(lin, NULL), mod_free);
    FAILS_P(qg_qat_dynamic_linear_from_float(lin, &qc), mod_free); /* not a memoryless observer */
    qg_qconfig dyn = preset("dynamic");
    FAILS_P(qg_qat_dynamic_linear_from_float(relu, &dyn), mod_free);
    FAILS_P(qg_qat_to_float(NULL), mod_free);
    FAILS_P(qg_qat_to_float(relu), mod_free);
    FAILS_ST(qg_qat_to_float_model(NULL));
    WORKS_ST(qg_qat_to_float_model(relu));
    qg_module *net = qg_sequential_of(3, (qg_named_module[]){{"fc", qg_nn_linear_new(4, 4, NULL, NULL)},
                                                            {"relu", qg_nn_relu_new()}, {"out", qg_nn_linear_new(4, 2, NULL, NULL)}});
    const char *const g_ok[] = {"fc", "relu"}, *const g_rev[] = {"relu", "fc"}, *const g_nope[] = {"fc", "nope"};
    const char *const g_null[] = {"fc", NULL}, *const g_one[] = {"fc"};
    const char *const *groups[] = {g_ok};
    FAILS_ST(qg_fuse_modules_qat(NULL, 1, groups, (int[]){2}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, NULL, (int[]){2}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, groups, NULL));
    FAILS_ST(qg_fuse_modules_qat(net, 1, (const char *const *[]){NULL}, (int[]){2}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, (const char *const *[]){g_null}, (int[]){2}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, (const char *const *[]){g_rev}, (int[]){2}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, (const char *const *[]){g_nope}, (int[]){2}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, (const char *const *[]){g_one}, (int[]){1}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, groups, (int[]){0}));
    FAILS_ST(qg_fuse_modules_qat(net, 1, groups, (int[]){-2}));
    FAILS_ST(qg_fuse_modules_qat(net, 2, (const char *const *[]){g_ok, g_ok}, (int[]){2, 2})); /* fused twice */
    WORKS_ST(qg_fuse_modules_qat(net, 0, NULL, NULL));
    FAILS_ST(qg_prepare_qat(NULL, &qc));
    FAILS_ST(qg_prepare_qat(net, NULL));
    qg_fq_spec keep = qc.weight;
    qc.weight.dtype = (qg_qdtype)42;
    FAILS_ST(qg_prepare_qat(net, &qc));
    qc.weight = keep;
    WORKS_ST(qg_prepare_qat(net, &qc));
    qg_tape_reset(NULL);
    qg_module_free(net), qg_module_free(obs), qg_module_free(relu), qg_module_free(lin);
    qg_tensor *all[] = {x, xi, z, sc3, zp3, sc4, sci, zp64, s1, z1, s2, zf3, on, rmin, rmax, fsc, fzp, fzpf};
    for (int k = 0; k < N_(all); k++) qg_tensor_free(all[k]);
}

/* ---------------------------------------------------------------- optim */

static void test_optim_null(void) {
    qg_tensor *p = ones(QG_F32, 1, SHAPE(4)), *q = ones(QG_F64, 2, SHAPE(2, 2)), *pi = qg_tensor_zeros(QG_I64, 1, SHAPE(2));
    qg_tensor *big = ones(QG_F32, 2, SHAPE(3, 4)), *pt = qg_transpose(big, 0, 1), *tape = qg_mul_scalar(p, 1);
    qg_tensor_set_requires_grad(p, true), qg_tensor_set_requires_grad(q, true);
    char *nm[] = {"p", "q"};
    qg_tensor *two[] = {p, q}, *dup[] = {p, p}, *nul[] = {p, NULL}, *ints[] = {pi}, *nc[] = {pt}, *tp[] = {tape};
    qg_tensor_list ok = {2, nm, two}, empty = {0, nm, two}, neg = {-1, nm, two}, ldup = {2, nm, dup};
    qg_tensor_list lnul = {2, nm, nul}, lint = {1, nm, ints}, lnc = {1, nm, nc}, ltp = {1, nm, tp}, nonames = {2, NULL, two};
    qg_tensor_list lnulp = {2, nm, NULL};
    const qg_tensor_list *bad_lists[] = {NULL, &empty, &neg, &ldup, &lnul, &lint, &lnc, &ltp, &lnulp};
    qg_sgd_opts so = {.lr = 0.1, .momentum = 0.9};
    qg_adam_opts ao = {.lr = 0.1};
    for (int k = 0; k < N_(bad_lists); k++) {
        FAILS_P(qg_sgd_new(bad_lists[k], &so), sgd_free);
        FAILS_P(qg_adam_new(bad_lists[k], &ao), adam_free);
        FAILS_P(qg_adamw_new(bad_lists[k], &ao), adam_free);
    }
    qg_clear_error();
    qg_sgd *sd0 = qg_sgd_new(&ok, NULL); /* lr has no default: an error, or PyTorch's behaviour */
    CHECK(sd0 || *qg_last_error(), "sgd_new(ps, NULL): %s", qg_last_error());
    qg_sgd_free(sd0);
    qg_clear_error();
    qg_adam *ad0 = qg_adam_new(&ok, NULL);
    CHECK(ad0 || *qg_last_error(), "adam_new(ps, NULL): %s", qg_last_error());
    qg_adam_free(ad0);
    qg_sgd_opts bad_sgd[] = {{.lr = -1}, {.lr = NAN}, {.lr = 0.1, .momentum = -1}, {.lr = 0.1, .weight_decay = -1},
                             {.lr = 0.1, .nesterov = true}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.5, .nesterov = true}};
    for (int k = 0; k < N_(bad_sgd); k++) FAILS_P(qg_sgd_new(&ok, &bad_sgd[k]), sgd_free);
    qg_adam_opts bad_adam[] = {{.lr = -1}, {.lr = 0.1, .betas = {QG_SET(1), QG_SET(0.9)}}, {.lr = 0.1, .betas = {QG_SET(0.9), QG_SET(-0.1)}},
                               {.lr = 0.1, .eps = QG_SET(-1)}, {.lr = 0.1, .weight_decay = QG_SET(-1)}, {.lr = NAN}};
    for (int k = 0; k < N_(bad_adam); k++) {
        FAILS_P(qg_adam_new(&ok, &bad_adam[k]), adam_free);
        FAILS_P(qg_adamw_new(&ok, &bad_adam[k]), adam_free);
    }
    qg_sgd *sgd = qg_sgd_new(&nonames, &so);
    qg_adam *adam = qg_adam_new(&ok, &ao), *adamw = qg_adamw_new(&ok, &(qg_adam_opts){.lr = 0.1, .amsgrad = true});
    CHECK(sgd && adam && adamw, "optimizers: %s", qg_last_error());
    qg_sgd_free(NULL), qg_adam_free(NULL);
    qg_sgd_zero_grad(NULL), qg_adam_zero_grad(NULL);
    FAILS_ST(qg_sgd_step(NULL));
    FAILS_ST(qg_adam_step(NULL));
    WORKS_ST(qg_sgd_step(sgd)); /* no grads yet: every parameter skipped */
    p->grad = ones(QG_F64, 1, SHAPE(4)); /* a grad of the wrong dtype */
    FAILS_ST(qg_sgd_step(sgd));
    FAILS_ST(qg_adam_step(adam));
    qg_tensor_free(p->grad), p->grad = ones(QG_F32, 1, SHAPE(4));
    WORKS_ST(qg_sgd_step(sgd));
    WORKS_ST(qg_adam_step(adamw));
    qg_sgd_zero_grad(sgd), qg_adam_zero_grad(adam);
    FAILS_ST(qg_sgd_set_lr(NULL, 0.1));
    FAILS_ST(qg_sgd_set_lr(sgd, -1));
    FAILS_ST(qg_sgd_set_lr(sgd, NAN));
    FAILS_ST(qg_adam_set_lr(NULL, 0.1));
    FAILS_ST(qg_adam_set_lr(adam, -0.1));
    FAILS_ST(qg_adam_set_lr(adam, NAN));
    FAILS_ST(qg_sgd_set_initial_lr(NULL, 0.1));
    FAILS_ST(qg_sgd_set_initial_lr(sgd, -1));
    CHECK(isnan(qg_sgd_get_lr(NULL)) && isnan(qg_adam_get_lr(NULL)) && isnan(qg_sgd_get_initial_lr(NULL)), "NAN lrs of NULL");
    CHECK(!qg_sgd_opts_of(NULL) && !qg_adam_opts_of(NULL) && !qg_adam_is_adamw(NULL) && qg_adam_is_adamw(adamw),
          "opts_of(NULL), is_adamw");
    CHECK(qg_sgd_num_params(NULL) == 0 && qg_adam_num_params(NULL) == 0 && qg_sgd_step_count(NULL) == 0 &&
              qg_adam_step_count(NULL) == 0 && qg_adam_param_steps(NULL, 0) == 0 && qg_adam_param_steps(adamw, 9) == 0,
          "counts of NULL");
    CHECK(!qg_sgd_momentum_buffer(NULL, 0) && !qg_sgd_momentum_buffer(sgd, -1) && !qg_sgd_momentum_buffer(sgd, 2) &&
              qg_sgd_momentum_buffer(sgd, 0),
          "momentum_buffer index checks");
    CHECK(!qg_adam_exp_avg(NULL, 0) && !qg_adam_exp_avg(adamw, INT32_MAX) && !qg_adam_exp_avg_sq(adamw, -1) &&
              !qg_adam_max_exp_avg_sq(adam, 0) && qg_adam_max_exp_avg_sq(adamw, 0),
          "adam state index checks");
    qg_tensor_dict *d = qg_tensor_dict_new(), *empty_d = qg_tensor_dict_new();
    FAILS_ST(qg_sgd_state_dict(NULL, d, ""));
    FAILS_ST(qg_sgd_state_dict(sgd, NULL, ""));
    WORKS_ST(qg_sgd_state_dict(sgd, d, NULL));
    FAILS_ST(qg_sgd_load_state_dict(NULL, d, NULL));
    FAILS_ST(qg_sgd_load_state_dict(sgd, NULL, NULL));
    FAILS_ST(qg_sgd_load_state_dict(sgd, empty_d, NULL));
    FAILS_ST(qg_sgd_load_state_dict(sgd, d, "other."));
    WORKS_ST(qg_sgd_load_state_dict(sgd, d, ""));
    FAILS_ST(qg_adam_state_dict(NULL, d, "a."));
    FAILS_ST(qg_adam_state_dict(adam, NULL, "a."));
    WORKS_ST(qg_adam_state_dict(adamw, d, "a."));
    FAILS_ST(qg_adam_load_state_dict(NULL, d, "a."));
    FAILS_ST(qg_adam_load_state_dict(adamw, NULL, "a."));
    FAILS_ST(qg_adam_load_state_dict(adamw, empty_d, "a."));
    FAILS_ST(qg_adam_load_state_dict(adam, d, "a.")); /* AdamW's state into an Adam */
    FAILS_ST(qg_adam_load_state_dict(adamw, d, NULL)); /* sgd's keys */
    WORKS_ST(qg_adam_load_state_dict(adamw, d, "a."));
    /* schedulers */
    FAILS_P(qg_step_lr_new(NULL, 2, 0.1), sched_free);
    FAILS_P(qg_step_lr_new(sgd, 0, 0.1), sched_free);
    FAILS_P(qg_step_lr_new(sgd, -1, 0.1), sched_free);
    FAILS_P(qg_multi_step_lr_new(NULL, 1, SHAPE(2), 0.1), sched_free);
    FAILS_P(qg_multi_step_lr_new(sgd, -1, SHAPE(2), 0.1), sched_free);
    FAILS_P(qg_multi_step_lr_new(sgd, 2, NULL, 0.1), sched_free);
    WORKS_P(qg_multi_step_lr_new(sgd, 0, NULL, 0.1), sched_free);
    FAILS_P(qg_cosine_annealing_lr_new(NULL, 10, 0), sched_free);
    FAILS_P(qg_cosine_annealing_lr_new(sgd, 0, 0), sched_free);
    FAILS_P(qg_linear_lr_new(NULL, 0.5, 1, 4), sched_free);
    FAILS_P(qg_linear_lr_new(sgd, 0, 1, 4), sched_free);
    FAILS_P(qg_linear_lr_new(sgd, 0.5, 1.5, 4), sched_free);
    FAILS_P(qg_linear_lr_new(sgd, 0.5, 1, 0), sched_free);
    FAILS_P(qg_linear_lr_new(sgd, NAN, 1, 4), sched_free);
    FAILS_P(qg_sequential_lr_new(NULL, 1, (qg_lr_scheduler *[]){qg_step_lr_new(sgd, 2, 0.5)}, NULL), sched_free);
    FAILS_P(qg_sequential_lr_new(sgd, 0, NULL, NULL), sched_free);
    FAILS_P(qg_sequential_lr_new(sgd, 1, NULL, NULL), sched_free);
    FAILS_P(qg_sequential_lr_new(sgd, 1, (qg_lr_scheduler *[]){NULL}, NULL), sched_free);
    FAILS_P(qg_sequential_lr_new(sgd, 2, ((qg_lr_scheduler *[]){qg_step_lr_new(sgd, 2, 0.5), qg_step_lr_new(sgd, 3, 0.5)}), NULL),
            sched_free);
    FAILS_P(qg_chained_scheduler_new(0, NULL), sched_free);
    FAILS_P(qg_chained_scheduler_new(-1, NULL), sched_free);
    FAILS_P(qg_chained_scheduler_new(1, NULL), sched_free);
    FAILS_P(qg_chained_scheduler_new(2, ((qg_lr_scheduler *[]){qg_step_lr_new(sgd, 2, 0.5), NULL})), sched_free);
    qg_lr_scheduler *s = qg_chained_scheduler_new(1, (qg_lr_scheduler *[]){qg_cosine_annealing_lr_new(sgd, 5, 0)});
    CHECK(s != NULL, "chained: %s", qg_last_error());
    FAILS_ST(qg_lr_scheduler_step(NULL));
    WORKS_ST(qg_lr_scheduler_step(s));
    CHECK(isnan(qg_lr_scheduler_get_last_lr(NULL)) && qg_lr_scheduler_last_epoch(NULL) == -1 && qg_lr_scheduler_last_epoch(s) == 1,
          "scheduler accessors");
    qg_lr_scheduler_free(NULL);
    FAILS_ST(qg_lr_scheduler_state_dict(NULL, d, "s."));
    FAILS_ST(qg_lr_scheduler_state_dict(s, NULL, "s."));
    WORKS_ST(qg_lr_scheduler_state_dict(s, d, "s."));
    FAILS_ST(qg_lr_scheduler_load_state_dict(NULL, d, "s."));
    FAILS_ST(qg_lr_scheduler_load_state_dict(s, NULL, "s."));
    FAILS_ST(qg_lr_scheduler_load_state_dict(s, empty_d, "s."));
    qg_lr_scheduler *st = qg_step_lr_new(sgd, 2, 0.5);
    FAILS_ST(qg_lr_scheduler_load_state_dict(st, d, "s.")); /* a ChainedScheduler's keys */
    WORKS_ST(qg_lr_scheduler_load_state_dict(s, d, "s."));
    qg_lr_scheduler_free(st), qg_lr_scheduler_free(s);
    qg_tensor_dict_free(d), qg_tensor_dict_free(empty_d);
    qg_sgd_free(sgd), qg_adam_free(adam), qg_adam_free(adamw);
    qg_tape_reset(NULL);
    qg_tensor_free(p), qg_tensor_free(q), qg_tensor_free(pi), qg_tensor_free(big);
}

int main(void) {
    test_nn_dict_null();
    test_nn_module_null();
    test_nn_layers_null();
    test_qat_null();
    test_optim_null();
    qg_shutdown();
    return test_summary("hostile_api2");
}
