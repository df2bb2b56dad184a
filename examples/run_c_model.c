/* run_c_model: the C model of `fmnist --convert F --export-c DIR`, without qgrad, on
 * the Fashion-MNIST test set (IDX files, unzipped). Build and run (README.md):
 *   cc -std=c99 -O2 -I DIR examples/run_c_model.c DIR/fmnist_int8.c -o run_c_model
 *   ./run_c_model t10k-images-idx3-ubyte t10k-labels-idx1-ubyte */
#include <stdio.h>

#include "fmnist_int8.h"

int main(int argc, char **argv) {
    static fmnist_int8_scratch_t scratch;
    float in[fmnist_int8_IN_SIZE], out[fmnist_int8_OUT_SIZE];
    unsigned char px[fmnist_int8_IN_SIZE], label;
    FILE *fi = argc == 3 ? fopen(argv[1], "rb") : NULL, *fl = argc == 3 ? fopen(argv[2], "rb") : NULL;
    long n = 0, correct = 0;
    int i, best;
    if (!fi || !fl || fseek(fi, 16, SEEK_SET) || fseek(fl, 8, SEEK_SET)) /* past the IDX headers */
        return fprintf(stderr, "usage: run_c_model IMAGES LABELS (the IDX files, unzipped)\n"), 2;
    for (; fread(px, 1, sizeof px, fi) == sizeof px && fread(&label, 1, 1, fl) == 1; n++) {
        for (i = 0; i < fmnist_int8_IN_SIZE; i++) in[i] = ((float)px[i] / 255.0f - 0.2860f) / 0.3530f; /* as fmnist */
        if (fmnist_int8_run(in, out, &scratch)) return 1;
        for (best = 0, i = 1; i < fmnist_int8_OUT_SIZE; i++) best = out[i] > out[best] ? i : best;
        correct += best == label;
    }
    printf("%ld images, accuracy %.2f%%\n", n, n ? 100.0 * (double)correct / (double)n : 0.0);
    return 0;
}
