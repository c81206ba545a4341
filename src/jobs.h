/* jobs: runs quick-import jobs in the background on the event loop, a few
 * per tick so the loop never stalls.  Each step asks the scripts'
 * import backend (main.job_step) what happened; every state change is
 * one transaction.  Jobs left INIT or RUNNING by a crash resume at start. */
#ifndef TAGWAY_JOBS_H
#define TAGWAY_JOBS_H
#include "gw.h"

typedef struct jobs jobs;

jobs *jobs_new(gw *g);
void jobs_free(jobs *j);
/* A job was submitted (or the server started): run the runner soon.
 * Any worker may call it. */
void jobs_kick(jobs *j);

/* In-memory progress (percent) of a running job; 0 if unknown. */
int jobs_progress(jobs *j, const char *job_id);

#endif
