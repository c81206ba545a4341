/* loader: `tagway load`, the bulk import of images with tags from JSON
 * lines (API.md §7): structure checked, all or nothing, progress shown. */
#ifndef TAGWAY_LOADER_H
#define TAGWAY_LOADER_H

/* Returns the process exit status: 0 stored, 1 failed (nothing stored). */
int loader_run(const char *db_path, const char *file);

#endif
