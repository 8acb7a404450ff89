// SPDX-License-Identifier: MIT
#pragma once
/* mpi_communicator: the communicator of communicator.hpp on MPI (Debian's OpenMPI), for host buffers. Link
   minibert::mpi (MPI::MPI_CXX and MINIBERT_WITH_MPI) to use it; launch with mpirun.

   One progress thread owns every MPI call after MPI_Init_thread, as torch's ProcessGroupMPI does: the caller queues
   a collective and goes on computing. The thread starts the nonblocking collective and polls it with MPI_Test,
   sleeping between polls, so that an idle wait does not take a core from the compute threads (OpenMPI's blocking
   calls spin). Errors come back as MPI error codes (MPI_ERRORS_RETURN) and become minibert::error naming the
   collective. */

#include <chrono>      // microseconds
#include <deque>       // deque
#include <functional>  // function
#include <string>      // string
#include <thread>      // thread, sleep_for
#include <utility>     // move

#include <mpi.h>

#include <minibert/distributed/communicator.hpp>

namespace minibert::distributed {

class mpi_communicator final : public communicator {
public:
  /// @brief initializes MPI (unless the program already did) and starts the progress thread
  /// @throws minibert::error when MPI lacks thread support or disagrees with a torchrun-style environment
  mpi_communicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    int provided = 0;
    if (!initialized) {
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
      owns_mpi_ = true;
    } else {
      MPI_Query_thread(&provided);
    }
    MINIBERT_CHECK(provided >= MPI_THREAD_SERIALIZED, "mpi_communicator",
                   "this MPI library gives thread level " << provided << "; the progress thread needs "
                                                          "MPI_THREAD_SERIALIZED or better");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    const launch_env env = launch_env::detect();
    MINIBERT_CHECK(env.launcher != "torchrun" || env.world_size == size_, "mpi_communicator",
                   "WORLD_SIZE=" << env.world_size << " but MPI sees " << size_ << " process(es): the MPI communicator "
                   "is launched by mpirun (or srun); a torchrun-style launch needs the NCCL communicator (--device cuda)");
    local_rank_ = env.launcher == "mpirun" ? env.local_rank : 0;
    progress_ = std::thread([this] { progress_loop(); });
  }
  ~mpi_communicator() override {
    {
      std::lock_guard lock(m_);
      stopping_ = true;
    }
    cv_.notify_all();
    progress_.join();
    if (owns_mpi_) MPI_Finalize();
  }
  mpi_communicator(const mpi_communicator&) = delete;
  mpi_communicator& operator=(const mpi_communicator&) = delete;

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string name() const override { return "mpi"; }
  memory_space memory() const override { return memory_space::host; }

  work all_reduce_sum_async(void* data, std::size_t count, element_type type, std::string what) override {
    MINIBERT_CHECK(count <= std::size_t(1) << 31, "all_reduce", what << ": " << count << " elements (at most 2^31 per call)");
    const MPI_Datatype dt = type == element_type::f32 ? MPI_FLOAT : MPI_DOUBLE;
    return enqueue(std::move(what), [data, count, dt](MPI_Request* r) {
      return MPI_Iallreduce(MPI_IN_PLACE, data, int(count), dt, MPI_SUM, MPI_COMM_WORLD, r);
    });
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    MINIBERT_CHECK(bytes <= std::size_t(1) << 31, "broadcast", bytes << " bytes (at most 2^31 per call)");
    MINIBERT_CHECK(root >= 0 && root < size_, "broadcast", "root " << root << " of world size " << size_);
    enqueue("broadcast of " + std::to_string(bytes) + " bytes from rank " + std::to_string(root),
            [data, bytes, root](MPI_Request* r) { return MPI_Ibcast(data, int(bytes), MPI_BYTE, root, MPI_COMM_WORLD, r); })
        .wait();
  }
  void barrier() override {
    enqueue("barrier", [](MPI_Request* r) { return MPI_Ibarrier(MPI_COMM_WORLD, r); }).wait();
  }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code); // MPI_Abort does not return; the compiler cannot know
  }

private:
  using starter = std::function<int(MPI_Request*)>;
  struct task {
    starter start;
    std::shared_ptr<work::state> state;
  };

  work enqueue(std::string what, starter start) {
    auto s = std::make_shared<work::state>();
    s->what = std::move(what);
    {
      std::lock_guard lock(m_);
      queue_.push_back({std::move(start), s});
    }
    cv_.notify_all();
    return work(std::move(s), timeout_);
  }

  // runs the queue in order: every rank issues its collectives in the same order, as MPI requires
  void progress_loop() {
    for (;;) {
      task t;
      {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        t = std::move(queue_.front());
        queue_.pop_front();
      }
      MPI_Request req = MPI_REQUEST_NULL;
      int rc = t.start(&req);
      int done = 0;
      while (rc == MPI_SUCCESS && !done) {
        rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
        if (!done) std::this_thread::sleep_for(std::chrono::microseconds(20));
      }
      std::exception_ptr failure;
      if (rc != MPI_SUCCESS) {
        try {
          check(rc, t.state->what);
        } catch (...) {
          failure = std::current_exception();
        }
      }
      work::finish(*t.state, failure);
    }
  }

  static void check(int rc, const std::string& what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw error("mpi_communicator", what + " failed: " + std::string(text, std::size_t(len)));
  }

  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool owns_mpi_ = false;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<task> queue_;
  bool stopping_ = false;
  std::thread progress_;
};

} // namespace minibert::distributed
