// SPDX-License-Identifier: MIT
#pragma once
/* The communicator contract of data-parallel training (as torch.distributed's ProcessGroup): a rank among world_size
   processes, sum all-reduce of float and double buffers that returns a work handle at once (the gradient buckets
   of ddp.hpp start while the backward pass is still running), broadcast and barrier. Every collective is issued in
   the same order on every rank. A wait that does not finish within timeout() throws minibert::error naming the
   collective, so a rank that stops answering never hangs the others for ever.

   Implementations: mpi_communicator (distributed/mpi.hpp; host memory, Debian's OpenMPI) and nccl_communicator
   (cuda/nccl.cuh; device memory). launch_env reads the rank and world size that mpirun or a torchrun-style launcher
   put in the environment. */

#include <chrono>             // seconds, steady_clock
#include <condition_variable> // condition_variable
#include <cstddef>            // size_t
#include <cstdint>            // int64_t
#include <cstdlib>            // getenv, strtol
#include <exception>          // exception_ptr
#include <functional>         // function
#include <memory>             // shared_ptr
#include <mutex>              // mutex, unique_lock
#include <optional>           // optional
#include <string>             // string
#include <thread>             // sleep_for

#include <minibert/error.hpp>

namespace minibert::distributed {

/// @brief element types a collective reduces
enum class element_type { f32, f64 };
inline std::size_t element_size(element_type t) { return t == element_type::f32 ? 4 : 8; }

/// @brief where a communicator's buffers live
enum class memory_space { host, cuda };

/// @brief one process's place in the job, as the launcher describes it
struct launch_env {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string launcher = "none"; ///< "mpirun" (OMPI_COMM_WORLD_*), "torchrun" (RANK, WORLD_SIZE, ...) or "none"
  std::string master_addr;       ///< torchrun-style: the rendezvous host (MASTER_ADDR)
  int master_port = 0;           ///< torchrun-style: its port (MASTER_PORT)

  bool distributed() const { return world_size > 1; }

  /// @brief from the environment: OpenMPI's OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} first, then
  /// torchrun's RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; a single process otherwise
  /// @throws minibert::error naming the variable when one is malformed or out of range
  static launch_env detect() {
    launch_env e;
    if (std::getenv("OMPI_COMM_WORLD_SIZE")) {
      e.launcher = "mpirun";
      e.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1, 1);
      e.rank = env_int("OMPI_COMM_WORLD_RANK", 0, 0);
      e.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0, 0);
      e.local_world_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1, 1);
    } else if (std::getenv("WORLD_SIZE")) {
      e.launcher = "torchrun";
      e.world_size = env_int("WORLD_SIZE", 1, 1);
      e.rank = env_int("RANK", 0, 0);
      e.local_rank = env_int("LOCAL_RANK", 0, 0);
      e.local_world_size = env_int("LOCAL_WORLD_SIZE", 1, 1);
      if (const char* a = std::getenv("MASTER_ADDR")) e.master_addr = a;
      e.master_port = env_int("MASTER_PORT", 0, 0);
      MINIBERT_CHECK(!e.distributed() || (!e.master_addr.empty() && e.master_port > 0 && e.master_port < 65536),
                     "launch_env", "WORLD_SIZE=" << e.world_size << " needs MASTER_ADDR and MASTER_PORT (1..65535)");
    }
    MINIBERT_CHECK(e.rank < e.world_size, "launch_env",
                   "rank " << e.rank << " is not below the world size " << e.world_size << " (" << e.launcher << ")");
    MINIBERT_CHECK(e.local_rank < e.local_world_size || e.launcher == "torchrun", "launch_env",
                   "local rank " << e.local_rank << " is not below the local world size " << e.local_world_size);
    return e;
  }

private:
  static int env_int(const char* name, int fallback, int min) {
    const char* v = std::getenv(name);
    if (!v) return fallback;
    char* end = nullptr;
    const long x = std::strtol(v, &end, 10);
    MINIBERT_CHECK(*v && end && *end == 0 && x >= min && x <= (1 << 24), "launch_env",
                   "environment variable " << name << "='" << v << "' is not an integer in [" << min << ", 2^24]");
    return int(x);
  }
};

/// @brief the completion of one asynchronous collective; the communicator's progress thread (or stream) finishes it
class work {
public:
  struct state {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    std::exception_ptr failure;
    std::string what; ///< "all_reduce of 1048576 f32 (bucket 3)": names the collective in a timeout error
    /// set by communicators without a thread of their own (NCCL): wait() calls it until it returns true
    std::function<bool()> poll;
  };
  work() = default;
  explicit work(std::shared_ptr<state> s, std::chrono::seconds timeout) : s_(std::move(s)), timeout_(timeout) {}
  /// @brief a work already complete (collectives that finish synchronously)
  static work completed() {
    auto s = std::make_shared<state>();
    s->done = true;
    return work(std::move(s), std::chrono::seconds(0));
  }

  bool valid() const { return s_ != nullptr; }
  /// @brief blocks until the collective completes; rethrows its failure
  /// @throws minibert::error when it did not complete within the communicator's timeout
  void wait() const {
    if (s_->poll) return wait_polling();
    std::unique_lock lock(s_->m);
    if (!s_->cv.wait_for(lock, timeout_, [&] { return s_->done; })) timed_out();
    if (s_->failure) std::rethrow_exception(s_->failure);
  }

  /// @brief marks s complete (with a failure, when f is set) and wakes its waiter
  static void finish(state& s, std::exception_ptr f = nullptr) {
    {
      std::lock_guard lock(s.m);
      s.done = true;
      s.failure = std::move(f);
    }
    s.cv.notify_all();
  }

private:
  void wait_polling() const {
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (!s_->poll()) {
      if (std::chrono::steady_clock::now() > deadline) timed_out();
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  [[noreturn]] void timed_out() const {
    throw error("communicator", s_->what + " did not complete within " + std::to_string(timeout_.count()) +
                                    " s: another rank has stopped or died (raise the limit with --ddp-timeout)");
  }

  std::shared_ptr<state> s_;
  std::chrono::seconds timeout_{0};
};

/// @brief a group of processes that reduce buffers together
class communicator {
public:
  virtual ~communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual int local_rank() const = 0;
  /// @brief "mpi", "nccl"
  virtual std::string name() const = 0;
  /// @brief where the buffers passed to the collectives must live
  virtual memory_space memory() const = 0;

  /// @brief starts an in-place sum over all ranks of `count` elements at `data`; `data` must stay valid and untouched
  /// until the returned work completes. `what` names the collective in errors.
  virtual work all_reduce_sum_async(void* data, std::size_t count, element_type type, std::string what) = 0;
  /// @brief copies `bytes` at `data` from rank `root` to every rank
  virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
  /// @brief returns when every rank has called it
  virtual void barrier() = 0;
  /// @brief ends every rank of the job at once with `code` (after an error on this rank that the others cannot see)
  [[noreturn]] virtual void abort(int code) = 0;

  void all_reduce_sum(void* data, std::size_t count, element_type type, std::string what) {
    all_reduce_sum_async(data, count, type, std::move(what)).wait();
  }

  /// @brief the longest a collective may wait for the other ranks (torch's default is 30 minutes)
  std::chrono::seconds timeout() const { return timeout_; }
  void set_timeout(std::chrono::seconds t) {
    MINIBERT_CHECK(t.count() > 0, "communicator", "the timeout must be positive, got " << t.count() << " s");
    timeout_ = t;
  }

protected:
  std::chrono::seconds timeout_{1800};
};

} // namespace minibert::distributed
