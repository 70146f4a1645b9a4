/* libssh (KDE Dolphin's kio-sftp, Remmina): one login and the stack check's file work (see
 * tests/integration/server_stacks.rs). Built by the test with `cc ... -lssh`.
 * usage: stack_libssh HOST PORT USER key:PATH|password:PW LOCAL REMOTE */
#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static ssh_session s;
static sftp_session sftp;

static void die(const char *what) {
    fprintf(stderr, "%s failed: %s (sftp error %d)\n", what, ssh_get_error(s),
            sftp ? sftp_get_error(sftp) : 0);
    exit(1);
}

static void put(const char *from, const char *to) {
    int in = open(from, O_RDONLY);
    sftp_file f = sftp_open(sftp, to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || !f) die("open for upload");
    char buf[32768];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (sftp_write(f, buf, n) != n) die("write");
    sftp_close(f);
    close(in);
}

static void get(const char *from, const char *to) {
    sftp_file f = sftp_open(sftp, from, O_RDONLY, 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!f || out < 0) die("open for download");
    char buf[32768];
    ssize_t n;
    while ((n = sftp_read(f, buf, sizeof buf)) > 0)
        if (write(out, buf, n) != n) die("local write");
    if (n < 0) die("read");
    sftp_close(f);
    close(out);
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage\n"); return 2; }
    const char *host = argv[1], *user = argv[3], *auth = argv[4], *local = argv[5], *remote = argv[6];
    int port = atoi(argv[2]);
    char a[4096], b[4096];
    s = ssh_new();
    ssh_options_set(s, SSH_OPTIONS_HOST, host);
    ssh_options_set(s, SSH_OPTIONS_PORT, &port);
    ssh_options_set(s, SSH_OPTIONS_USER, user);
    if (ssh_connect(s) != SSH_OK) die("connect");
    if (strncmp(auth, "key:", 4) == 0) {
        ssh_key key;
        if (ssh_pki_import_privkey_file(auth + 4, NULL, NULL, NULL, &key) != SSH_OK) die("key import");
        if (ssh_userauth_publickey(s, NULL, key) != SSH_AUTH_SUCCESS) die("key login");
    } else if (ssh_userauth_password(s, NULL, auth + 9) != SSH_AUTH_SUCCESS) {
        die("password login");
    }
    sftp = sftp_new(s);
    if (!sftp || sftp_init(sftp) != SSH_OK) die("sftp init");
    if (sftp_mkdir(sftp, remote, 0755) != 0) die("mkdir");
    snprintf(a, sizeof a, "%s/up.bin", local);
    snprintf(b, sizeof b, "%s/up.bin", remote);
    put(a, b);
    sftp_dir d = sftp_opendir(sftp, remote);
    if (!d) die("opendir");
    sftp_attributes at;
    while ((at = sftp_readdir(sftp, d))) {
        if (strcmp(at->name, ".") && strcmp(at->name, "..")) printf("ls: %s\n", at->name);
        sftp_attributes_free(at);
    }
    sftp_closedir(d);
    snprintf(a, sizeof a, "%s/moved.bin", remote);
    if (sftp_rename(sftp, b, a) != 0) die("rename");
    snprintf(b, sizeof b, "%s/back.bin", local);
    get(a, b);
    snprintf(a, sizeof a, "%s/sub", remote);
    if (sftp_mkdir(sftp, a, 0755) != 0 || sftp_rmdir(sftp, a) != 0) die("mkdir/rmdir");
    snprintf(a, sizeof a, "%s/small.txt", local);
    snprintf(b, sizeof b, "%s/small.txt", remote);
    put(a, b);
    if (sftp_unlink(sftp, b) != 0) die("remove");
    sftp_free(sftp);
    ssh_disconnect(s);
    ssh_free(s);
    printf("ok libssh %s\n", ssh_version(0));
    return 0;
}
