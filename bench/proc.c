/*
 * proc.c - what kraken_bench reads from /proc: a process's CPU time (utime + stime, in clock
 * ticks, all its threads) and resident memory, the tree of processes under one (bin/kraken runs
 * an Erlang VM that runs the engine), liveness checks that survive pid reuse, and the
 * generator's own CPU time.  Everything measured must run on this machine.
 */
#include "kb.h"

#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

long g_clk_tck = 100;

/* utime+stime (ticks), rss (kB, from status VmRSS) of one process; 0 on success */
int proc_cpu_ticks(pid_t pid, uint64_t *ticks)
{
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')');
    if (!p) return -1;
    /* after ')': state(3) ppid(4) ... utime(14) stime(15) */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    *ticks = ut + st;
    return 0;
}

long proc_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "VmRSS:", 6)) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}


int read_pinfo(pid_t pid, pinfo_t *pi)
{
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *l = strchr(line, '('), *r = strrchr(line, ')');
    if (!l || !r || r < l) return -1;
    memset(pi, 0, sizeof *pi);
    pi->pid = pid;
    size_t cl = (size_t)(r - l - 1);
    if (cl >= sizeof pi->comm) cl = sizeof pi->comm - 1;
    memcpy(pi->comm, l + 1, cl);
    pi->comm[cl] = 0;
    int field = 2;
    char *save = NULL;
    unsigned long long ut = 0, st = 0;
    for (char *tok = strtok_r(r + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        switch (field) {
        case 3: pi->state = tok[0]; break;
        case 4: pi->ppid = (pid_t)atoi(tok); break;
        case 14: ut = strtoull(tok, NULL, 10); break;
        case 15: st = strtoull(tok, NULL, 10); break;
        case 22: pi->start = strtoull(tok, NULL, 10); break;
        case 24: pi->rss_pages = atol(tok); break;
        default: break;
        }
        if (field >= 24) break;
    }
    pi->ticks = ut + st;
    return 0;
}

/* all processes in the tree rooted at root (root included); returns count, *out malloc'ed */
int proc_tree(pid_t root, pinfo_t **out)
{
    int cap = 256, n = 0;
    pinfo_t *all = xmalloc(sizeof(pinfo_t) * (size_t)cap);
    DIR *d = opendir("/proc");
    if (!d) {
        *out = NULL;
        free(all);
        return 0;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        if (n == cap) {
            cap *= 2;
            all = xrealloc(all, sizeof(pinfo_t) * (size_t)cap);
        }
        if (read_pinfo((pid_t)atoi(de->d_name), &all[n]) == 0) n++;
    }
    closedir(d);
    char *in = xcalloc((size_t)n, 1);
    int found = 0;
    for (int i = 0; i < n; i++)
        if (all[i].pid == root) in[i] = 1, found = 1;
    if (!found) {
        free(in);
        free(all);
        *out = NULL;
        return 0;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++) {
            if (in[i]) continue;
            for (int j = 0; j < n; j++)
                if (in[j] && all[j].pid == all[i].ppid) {
                    in[i] = 1;
                    changed = 1;
                    break;
                }
        }
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (in[i]) all[m++] = all[i];
    free(in);
    *out = all;
    return m;
}

void tree_sample(pid_t root, uint64_t *ticks, long *rss_kb)
{
    pinfo_t *t;
    int n = proc_tree(root, &t);
    long pg = sysconf(_SC_PAGESIZE) / 1024;
    *ticks = 0;
    *rss_kb = 0;
    for (int i = 0; i < n; i++) {
        *ticks += t[i].ticks;
        *rss_kb += t[i].rss_pages * pg;
    }
    free(t);
}

int pid_alive(pid_t pid, unsigned long long start)
{
    pinfo_t pi;
    if (read_pinfo(pid, &pi) < 0) return 0;
    if (start && pi.start != start) return 0;
    return pi.state != 'Z' && pi.state != 'X';
}

int any_process_named(const char *comm)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d))) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        pinfo_t pi;
        if (read_pinfo((pid_t)atoi(de->d_name), &pi) == 0 && !strcmp(pi.comm, comm) && pi.state != 'Z')
            found = 1;
    }
    closedir(d);
    return found;
}

/* the generator's own CPU time, seconds */
double rusage_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}
