/* trivcc: the "compiler" of the per-job cost benchmark (bench/run.sh).
 *
 * It writes "trivo\n" to the file after -o and exits 0, so that a job costs
 * the daemon everything but compiling: reading the request, the job's
 * directory and files, starting and reaping a process, and the response.
 * bench/load.py checks that every response carries exactly these bytes.
 * Built statically with musl where musl-gcc exists, because glibc's static
 * start-up alone takes several times longer than the rest of this program. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "-o") == 0) {
            int fd = open(argv[i + 1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
            return fd < 0 || write(fd, "trivo\n", 6) != 6 || close(fd) != 0;
        }
    }
    return 1;
}
