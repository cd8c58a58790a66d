// A process whose last act is a parallel loop must end: its worker thread may start only
// after the pool's destructor has signalled the workers to stop, and must stop then too.
// Each round forks a child that runs one loop on two threads and exits at once; the parent
// fails if a child does not end within the alarm.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include <ember/core/threading.hpp>

int main() {
    alarm(60);  // a hung child leaves the parent blocked in waitpid: the alarm ends the test as failed
    for (int round = 0; round < 200; ++round) {
        const pid_t child = fork();
        if (child < 0) {
            std::perror("fork");
            return 1;
        }
        if (child == 0) {
            ember::set_num_threads(2);
            std::atomic<int> sum{0};
            ember::parallel_tasks(2, [&](int t) { sum += t + 1; });
            std::exit(sum == 3 ? 0 : 2);
        }
        int status = 0;
        if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            std::fprintf(stderr, "round %d: the child did not exit cleanly (status %d)\n", round, status);
            return 1;
        }
    }
    return 0;
}
