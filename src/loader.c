/* loader: placeholder until the bulk loader lands (issue 3). */
#include "loader.h"
#include <stdio.h>
int loader_run(const char *db_path, const char *file)
{
    (void)db_path;
    fprintf(stderr, "tagway load: not built yet (%s)\n", file);
    return 1;
}
