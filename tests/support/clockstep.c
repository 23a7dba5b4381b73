/* Shifts only the wall clock of the process it is preloaded into, as an NTP or GPS step
 * does: CLOCK_REALTIME (and its coarse variant), gettimeofday() and time() are moved by the
 * offset in seconds written in the file named by EDGE_CLOCK_OFFSET_FILE; the monotonic
 * clocks, sleeps and timeouts are untouched. The file is read again at most every 20 ms
 * (by the real monotonic clock), so a test steps the clock by rewriting it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static double offset_s;
static struct timespec read_at;

static void load_offset(void) {
    struct timespec now;
    if (!real_clock_gettime)
        real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    real_clock_gettime(CLOCK_MONOTONIC, &now);
    double age = (now.tv_sec - read_at.tv_sec) + (now.tv_nsec - read_at.tv_nsec) / 1e9;
    if (read_at.tv_sec != 0 && age < 0.02)
        return;
    read_at = now;
    const char *path = getenv("EDGE_CLOCK_OFFSET_FILE");
    if (!path)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    double value;
    if (fscanf(f, "%lf", &value) == 1)
        offset_s = value;
    fclose(f);
}

static void shift(struct timespec *ts) {
    long long ns = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec
                   + (long long)(offset_s * 1e9);
    ts->tv_sec = ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000LL;
        ts->tv_sec -= 1;
    }
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    load_offset();
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts);
    return rc;
}

/* Linux allows a NULL tv, though glibc's header declares it nonnull. */
#pragma GCC diagnostic ignored "-Wnonnull-compare"
int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return -1;
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
