/* Steps the wall clock of the processes it is preloaded into (LD_PRELOAD), and only it.
 *
 * CLOCK_REALTIME (clock_gettime, gettimeofday, time) reads the real clock plus an offset in
 * nanoseconds, an int64 held in the file $CLOCKSHIFT_FILE, mapped shared: a test writes a
 * new offset and every process (the supervisor, its forked workers) sees the step at once,
 * as after a real `date -s`. CLOCK_MONOTONIC and CLOCK_BOOTTIME are left alone, as a real
 * step leaves them. (libfaketime 0.9.10 can leave the monotonic clocks alone too, but then
 * breaks clock_nanosleep, so Python's time.sleep fails with EINVAL.)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);
static volatile int64_t *offset_ns;

__attribute__((constructor)) static void init(void) {
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    const char *path = getenv("CLOCKSHIFT_FILE");
    if (path == NULL) return;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return;
    void *map = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map != MAP_FAILED) offset_ns = (volatile int64_t *)map;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    if (real_clock_gettime == NULL) init();
    int result = real_clock_gettime(clock, ts);
    if (result == 0 && offset_ns != NULL &&
        (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) {
        int64_t ns = (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec + *offset_ns;
        ts->tv_sec = ns / 1000000000LL;
        ts->tv_nsec = ns % 1000000000LL;
    }
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    tv->tv_sec = ts.tv_sec;   /* glibc declares tv nonnull */
    tv->tv_usec = ts.tv_nsec / 1000;
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL) *out = ts.tv_sec;
    return ts.tv_sec;
}
