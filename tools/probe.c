/*
 * probe: what a process can see and do, for tests/isolation.rs.
 *
 * Built static by the tests (gcc -static -O2) and bind-mounted read-only into containers
 * (`-v PROBE:/probe:ro`), so it needs nothing from the image. Each subcommand prints one
 * `key=value` per line; an outcome is `ok` or the errno's name (`EPERM`, `ENOSYS`, …).
 * It never writes to a device or to /proc: "write" only opens, and cleans up what it made.
 *
 *   fds                       every entry of /proc/self/fd: fd.N=TARGET, then fds=0,1,2
 *   status                    Seccomp, NoNewPrivs and the capability sets of /proc/self/status
 *   ids                       uid, euid, gid, egid
 *   syscalls                  keyctl add_key unshare_user perf_event_open io_uring_setup bpf
 *                             socket_vsock clone3 fork socket_inet mkdir: NAME=ok|ERRNO
 *   mknod-open PATH c|b MAJ MIN   mknod=…, then open=… (O_RDWR); the node is removed again
 *   open PATH [rw|ro|wo]      open=… (default rw); nothing is read or written
 *   use PATH                  open=… (O_RDWR), then read=… and write=… of one zero byte
 *   keyring                   keyring=ID of the session keyring (and keyring.desc=…)
 *   rawsock                   rawsock=… for socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)
 *   cgroup                    cgroup=LINE for each line of /proc/self/cgroup
 *   mountinfo-of PATH         mountpoint=, fstype=, options= (per mount), super= (superblock)
 *                             of the topmost mount at PATH (mountpoint=none if none)
 *   read PATH                 a file: read=BYTES and text=… (escaped, first 4 KiB); a
 *                             directory: entries=N and names=…; or read=ERRNO
 *   write PATH                an existing file: write=… (opened O_WRONLY, nothing written);
 *                             a missing file: create=…; a directory: create=… and mkdir=…
 *                             of a new entry inside
 *   cwd                       cwd=getcwd(), here=entries of ".", up=entries of "../../../.."
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

/* The name of an errno value ("EPERM"), or "E<number>". */
static const char *err_name(int e) {
    static char buf[32];
    const char *name = strerrorname_np(e);
    if (name)
        return name;
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

/* Print KEY=ok when ret >= 0, else KEY=ERRNO (errno as left by the call). */
static void outcome(const char *key, long ret) {
    if (ret >= 0)
        printf("%s=ok\n", key);
    else
        printf("%s=%s\n", key, err_name(errno));
}

/* A child's result: it exits 0 on success, else with the errno. */
static void child_outcome(const char *key, pid_t pid) {
    int status;
    if (pid < 0) {
        printf("%s=%s\n", key, err_name(errno));
        return;
    }
    if (waitpid(pid, &status, 0) < 0) {
        printf("%s=wait-%s\n", key, err_name(errno));
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        printf("%s=ok\n", key);
    else if (WIFEXITED(status))
        printf("%s=%s\n", key, err_name(WEXITSTATUS(status)));
    else
        printf("%s=signal-%d\n", key, WTERMSIG(status));
}

/* Entry names of DIR, comma separated (at most 40, "." and ".." left out); -1 on error. */
static int list_dir(const char *dir, char *out, size_t size) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    out[0] = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (n < 40 && strlen(out) + strlen(e->d_name) + 2 < size) {
            if (n)
                strcat(out, ",");
            strcat(out, e->d_name);
        }
        n++;
    }
    closedir(d);
    return n;
}

static int cmd_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    char path[300], target[4096], list[1024] = "";
    int self;
    if (!d) {
        printf("fds=%s\n", err_name(errno));
        return 1;
    }
    self = dirfd(d);
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        printf("fd.%s=%s\n", e->d_name, n < 0 ? err_name(errno) : target);
        if (strlen(list) + strlen(e->d_name) + 2 < sizeof list) {
            if (list[0])
                strcat(list, ",");
            strcat(list, e->d_name);
        }
    }
    closedir(d);
    printf("fds=%s\n", list);
    return 0;
}

static int cmd_status(void) {
    static const char *keys[] = {"Seccomp", "NoNewPrivs", "CapInh", "CapPrm",
                                 "CapEff",  "CapBnd",     "CapAmb", NULL};
    FILE *f = fopen("/proc/self/status", "r");
    char line[512];
    if (!f) {
        printf("status=%s\n", err_name(errno));
        return 1;
    }
    while (fgets(line, sizeof line, f)) {
        for (int i = 0; keys[i]; i++) {
            size_t k = strlen(keys[i]);
            if (!strncmp(line, keys[i], k) && line[k] == ':') {
                char *v = line + k + 1;
                v += strspn(v, " \t");
                v[strcspn(v, "\n")] = 0;
                printf("%s=%s\n", keys[i], v);
            }
        }
    }
    fclose(f);
    return 0;
}

static int cmd_ids(void) {
    printf("uid=%d\neuid=%d\ngid=%d\negid=%d\n", getuid(), geteuid(), getgid(), getegid());
    return 0;
}

/* clone3's argument, as the kernel reads it (CLONE_ARGS_SIZE_VER0 = 64 bytes). */
struct probe_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static int cmd_syscalls(void) {
    long r;

    r = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    outcome("keyctl", r);

    r = syscall(SYS_add_key, "user", "img-probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
    outcome("add_key", r);

    /* in a child, so that the probe itself stays in its namespaces */
    pid_t pid = fork();
    if (pid == 0)
        _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : errno);
    child_outcome("unshare_user", pid);

    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.size = sizeof attr;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.disabled = 1;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    r = syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0);
    outcome("perf_event_open", r);
    if (r >= 0)
        close(r);

    unsigned char params[128]; /* struct io_uring_params (120 bytes), all zero */
    memset(params, 0, sizeof params);
    r = syscall(SYS_io_uring_setup, 1, params);
    outcome("io_uring_setup", r);
    if (r >= 0)
        close(r);

    union bpf_attr battr;
    memset(&battr, 0, sizeof battr);
    battr.map_type = BPF_MAP_TYPE_ARRAY;
    battr.key_size = 4;
    battr.value_size = 4;
    battr.max_entries = 1;
    r = syscall(SYS_bpf, BPF_MAP_CREATE, &battr, sizeof battr);
    outcome("bpf", r);
    if (r >= 0)
        close(r);

    r = socket(AF_VSOCK, SOCK_STREAM, 0);
    outcome("socket_vsock", r);
    if (r >= 0)
        close(r);

    struct probe_clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    r = syscall(SYS_clone3, &args, sizeof args);
    if (r == 0)
        syscall(SYS_exit, 0); /* the child: nothing else */
    if (r < 0)
        outcome("clone3", r);
    else
        child_outcome("clone3", (pid_t)r);

    pid = fork();
    if (pid == 0)
        _exit(0);
    child_outcome("fork", pid);

    r = socket(AF_INET, SOCK_STREAM, 0);
    outcome("socket_inet", r);
    if (r >= 0)
        close(r);

    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/.probe-mkdir-%d", getpid());
    r = syscall(SYS_mkdir, dir, 0700);
    outcome("mkdir", r);
    if (r == 0)
        rmdir(dir);
    return 0;
}

static int cmd_mknod_open(const char *path, const char *kind, const char *maj,
                          const char *min) {
    mode_t type = !strcmp(kind, "b") ? S_IFBLK : S_IFCHR;
    unlink(path);
    if (mknod(path, type | 0600, makedev(atoi(maj), atoi(min))) < 0) {
        printf("mknod=%s\n", err_name(errno));
        return 0;
    }
    printf("mknod=ok\n");
    int fd = open(path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    outcome("open", fd);
    if (fd >= 0)
        close(fd);
    unlink(path);
    return 0;
}

static int cmd_open(const char *path, const char *how) {
    int flags = O_RDWR;
    if (!strcmp(how, "ro"))
        flags = O_RDONLY;
    else if (!strcmp(how, "wo"))
        flags = O_WRONLY;
    int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    outcome("open", fd);
    if (fd >= 0)
        close(fd);
    return 0;
}

static int cmd_use(const char *path) {
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    outcome("open", fd);
    if (fd < 0)
        return 0;
    char c = 0;
    outcome("read", read(fd, &c, 1));
    c = 0;
    outcome("write", write(fd, &c, 1));
    close(fd);
    return 0;
}

static int cmd_keyring(void) {
    long id = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    if (id < 0) {
        printf("keyring=%s\n", err_name(errno));
        return 0;
    }
    printf("keyring=%ld\n", id);
    char desc[512];
    long n = syscall(SYS_keyctl, KEYCTL_DESCRIBE, id, desc, sizeof desc - 1);
    if (n > 0) {
        desc[n < (long)sizeof desc ? n : (long)sizeof desc - 1] = 0;
        printf("keyring.desc=%s\n", desc);
    }
    return 0;
}

static int cmd_rawsock(void) {
    int fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    outcome("rawsock", fd);
    if (fd >= 0)
        close(fd);
    return 0;
}

static int cmd_cgroup(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[4096];
    if (!f) {
        printf("cgroup=%s\n", err_name(errno));
        return 1;
    }
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        printf("cgroup=%s\n", line);
    }
    fclose(f);
    return 0;
}

static int cmd_mountinfo_of(const char *path) {
    FILE *f = fopen("/proc/self/mountinfo", "r");
    char line[8192], found[8192] = "";
    if (!f) {
        printf("mountpoint=%s\n", err_name(errno));
        return 1;
    }
    /* the last entry for PATH is the topmost mount */
    while (fgets(line, sizeof line, f)) {
        char copy[8192], *save, *fields[8];
        int n = 0;
        strcpy(copy, line);
        for (char *t = strtok_r(copy, " ", &save); t && n < 8; t = strtok_r(NULL, " ", &save))
            fields[n++] = t;
        if (n >= 6 && !strcmp(fields[4], path))
            strcpy(found, line);
    }
    fclose(f);
    if (!found[0]) {
        printf("mountpoint=none\n");
        return 0;
    }
    found[strcspn(found, "\n")] = 0;
    char *sep = strstr(found, " - ");
    char *save, *mp = NULL, *opts = NULL;
    if (!sep) {
        printf("mountpoint=unparsable\n");
        return 1;
    }
    *sep = 0;
    int i = 0;
    for (char *t = strtok_r(found, " ", &save); t; t = strtok_r(NULL, " ", &save), i++) {
        if (i == 4)
            mp = t;
        else if (i == 5)
            opts = t;
    }
    char *fstype = strtok_r(sep + 3, " ", &save);
    strtok_r(NULL, " ", &save); /* source */
    char *super = strtok_r(NULL, " ", &save);
    printf("mountpoint=%s\nfstype=%s\noptions=%s\nsuper=%s\n", mp ? mp : "", fstype ? fstype : "",
           opts ? opts : "", super ? super : "");
    return 0;
}

static int cmd_read(const char *path) {
    struct stat st;
    if (stat(path, &st) < 0) {
        printf("read=%s\n", err_name(errno));
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        char names[4096];
        int n = list_dir(path, names, sizeof names);
        if (n < 0)
            printf("read=%s\n", err_name(errno));
        else
            printf("entries=%d\nnames=%s\n", n, names);
        return 0;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        printf("read=%s\n", err_name(errno));
        return 0;
    }
    static char buf[65536];
    char text[4096 * 4 + 1];
    size_t total = 0, t = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (total == 0) {
                printf("read=%s\n", err_name(errno));
                close(fd);
                return 0;
            }
            break;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n && total + i < 4096; i++) {
            unsigned char c = buf[i];
            if (c == '\n') {
                text[t++] = '\\';
                text[t++] = 'n';
            } else if (c == '\\') {
                text[t++] = '\\';
                text[t++] = '\\';
            } else if (c >= 32 && c < 127) {
                text[t++] = c;
            } else {
                t += sprintf(text + t, "\\x%02x", c);
            }
        }
        total += n;
        if (total >= 16 << 20)
            break; /* /proc/kcore, unmasked, is as large as the address space */
    }
    text[t] = 0;
    close(fd);
    printf("read=%zu\ntext=%s\n", total, text);
    return 0;
}

static int cmd_write(const char *path) {
    struct stat st;
    char name[4096];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(name, sizeof name, "%s/.probe-create-%d", path, getpid());
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        outcome("create", fd);
        if (fd >= 0) {
            close(fd);
            unlink(name);
        }
        snprintf(name, sizeof name, "%s/.probe-mkdir-%d", path, getpid());
        long r = mkdir(name, 0700);
        outcome("mkdir", r);
        if (r == 0)
            rmdir(name);
        return 0;
    }
    if (lstat(path, &st) < 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        outcome("create", fd);
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        return 0;
    }
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    outcome("write", fd);
    if (fd >= 0)
        close(fd);
    return 0;
}

static int cmd_cwd(void) {
    char buf[4096], names[4096];
    if (getcwd(buf, sizeof buf))
        printf("cwd=%s\n", buf);
    else
        printf("cwd=%s\n", err_name(errno));
    int n = list_dir(".", names, sizeof names);
    printf("here=%s\n", n < 0 ? err_name(errno) : names);
    n = list_dir("../../../..", names, sizeof names);
    printf("up=%s\n", n < 0 ? err_name(errno) : names);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: probe fds|status|ids|syscalls|keyring|rawsock|cgroup|cwd\n"
                    "       probe mknod-open PATH c|b MAJ MIN | open PATH [rw|ro|wo] | use PATH\n"
                    "       probe mountinfo-of PATH | read PATH | write PATH\n");
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "fds"))
        return cmd_fds();
    if (!strcmp(cmd, "status"))
        return cmd_status();
    if (!strcmp(cmd, "ids"))
        return cmd_ids();
    if (!strcmp(cmd, "syscalls"))
        return cmd_syscalls();
    if (!strcmp(cmd, "keyring"))
        return cmd_keyring();
    if (!strcmp(cmd, "rawsock"))
        return cmd_rawsock();
    if (!strcmp(cmd, "cgroup"))
        return cmd_cgroup();
    if (!strcmp(cmd, "cwd"))
        return cmd_cwd();
    if (!strcmp(cmd, "mknod-open") && argc == 6)
        return cmd_mknod_open(argv[2], argv[3], argv[4], argv[5]);
    if (!strcmp(cmd, "open") && (argc == 3 || argc == 4))
        return cmd_open(argv[2], argc == 4 ? argv[3] : "rw");
    if (!strcmp(cmd, "use") && argc == 3)
        return cmd_use(argv[2]);
    if (!strcmp(cmd, "mountinfo-of") && argc == 3)
        return cmd_mountinfo_of(argv[2]);
    if (!strcmp(cmd, "read") && argc == 3)
        return cmd_read(argv[2]);
    if (!strcmp(cmd, "write") && argc == 3)
        return cmd_write(argv[2]);
    return usage();
}
