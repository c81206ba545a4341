/* replay: runs a fuzz harness over the files named on the command line,
 * once each, without libFuzzer.  `make` builds one per harness with the
 * project's own compiler and flags (and `make asan` under ASan/UBSan), so
 * `make test` replays the kept inputs through the harness code on every
 * run, even where clang's libFuzzer is not installed: a harness that no
 * longer sets up what the code it drives needs fails here first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int replay(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long size;
    int rc = -1;

    if (!f) {
        perror(path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto done;
    if (!(data = malloc(size ? (size_t)size : 1)))
        goto done;
    if (fread(data, 1, (size_t)size, f) != (size_t)size)
        goto done;
    LLVMFuzzerTestOneInput(data, (size_t)size); /* a finding aborts */
    rc = 0;
done:
    if (rc != 0)
        fprintf(stderr, "replay: cannot read %s\n", path);
    free(data);
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    int failed = 0;

    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++)
        failed |= replay(argv[i]) != 0;
    printf("replay: %d inputs%s\n", argc - 1, failed ? ", some unreadable" : "");
    return failed;
}
