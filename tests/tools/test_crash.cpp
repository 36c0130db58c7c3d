// Crash safety of the crfseg program, run as a separate process:
//   - `kill -9` while a checkpoint is being written leaves the previous
//     checkpoint intact and loadable, and `--resume` then finishes the run
//     with exactly the weights of a run that was never interrupted;
//   - a full disk (a tiny tmpfs, when this process may mount one) is
//     reported, and the previous file survives.
// The program's path comes from CRFSEG_EXE (set by tests/meson.build).
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tensor/safetensors.h"
#include "tests/support/helpers.h"
#include "tests/support/temp_dir.h"

using namespace crfseg;
using namespace crfseg::test;
namespace fs = std::filesystem;

namespace {

std::string exe() {
  const char* p = std::getenv("CRFSEG_EXE");
  REQUIRE_MESSAGE(p != nullptr, "CRFSEG_EXE is not set (tests/meson.build sets it to the crfseg program)");
  return p;
}

pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
  std::fflush(stdout);  // else the child's freopen flushes our buffered output a second time
  std::fflush(stderr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    std::FILE* f = std::freopen(log.c_str(), "w", stdout);
    if (f != nullptr) ::dup2(::fileno(stdout), 2);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> temporaries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  }
  return out;
}

// A run long enough that checkpoints take a few milliseconds to write
// (Adam state of a ~0.5M-parameter U-Net: ~6 MB, then fsync).
std::vector<std::string> train_args(const std::string& out) {
  return {exe(), "train", "--data", "synth:48", "--synth-size", "32", "--size", "32", "--base", "16", "--depth", "3",
          "--batch", "4", "--epochs", "2", "--checkpoint-every", "1", "--workers", "0", "--threads", "2", "--quiet",
          "--out", out};
}

}  // namespace

TEST_CASE("kill -9 during a checkpoint write: the previous checkpoint survives and --resume finishes the run") {
  TempDir dir;
  const std::string straight = dir.file("straight");
  REQUIRE(wait_exit(spawn(train_args(straight), dir.file("straight.log"))) == 0);

  // Kill the run the moment it first writes into its 5th temporary
  // checkpoint file, i.e. while writing it. The kill can lose the race to the rename on a
  // fast disk; then try again (the test requires one kill mid-write).
  const std::string out = dir.file("crashed");
  bool killed_mid_write = false;
  std::vector<std::string> leftovers;
  for (int attempt = 0; attempt < 5 && !killed_mid_write; ++attempt) {
    fs::remove_all(out);
    fs::create_directories(out);
    const int fd = ::inotify_init1(IN_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(::inotify_add_watch(fd, out.c_str(), IN_CREATE | IN_MODIFY) >= 0);
    const pid_t pid = spawn(train_args(out), dir.file("crashed.log"));
    int creates = 0;
    bool killed = false;
    alignas(inotify_event) char buf[4096];
    while (!killed) {
      pollfd pfd{fd, POLLIN, 0};
      if (::poll(&pfd, 1, 60000) <= 0) break;  // no event in a minute: give up this attempt
      const ssize_t n = ::read(fd, buf, sizeof buf);
      for (ssize_t i = 0; i < n && !killed;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(buf + i);
        if (ev->len > 0 && std::string(ev->name).find("last.safetensors.tmp.") == 0) {
          if (ev->mask & IN_CREATE) ++creates;
          if ((ev->mask & IN_MODIFY) && creates == 5) {
            ::kill(pid, SIGKILL);
            killed = true;
          }
        }
        i += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      }
    }
    ::close(fd);
    const int code = wait_exit(pid);
    REQUIRE_MESSAGE(killed, "the run never wrote a 5th checkpoint: " << slurp(dir.file("crashed.log")));
    CHECK(code == 128 + SIGKILL);
    leftovers = temporaries(out);
    killed_mid_write = !leftovers.empty();  // the temporary was never renamed
  }
  REQUIRE_MESSAGE(killed_mid_write, "5 kills all landed after the rename; no mid-write kill was observed");
  MESSAGE("killed mid-write, leaving " << leftovers.front() << " (" << fs::file_size(leftovers.front()) << " bytes)");

  // The previous checkpoint is whole: its checksum verifies.
  const SafetensorsFile previous = load_safetensors(out + "/last.safetensors");
  CHECK(previous.checksum_verified);
  CHECK(previous.metadata.at("step") == "4");  // the 4th write completed, the 5th was killed
  // The temporary is the 5th write: partial (it does not load), or whole
  // when the kill landed after its last byte but before the rename (5 runs
  // in 30). Sizes do not tell them apart: the metadata's length
  // varies by a few bytes from step to step.
  bool partial = false;
  try {
    const SafetensorsFile unrenamed = load_safetensors(leftovers.front());
    CHECK(unrenamed.metadata.at("step") == "5");
  } catch (const Error&) {
    partial = true;
  }
  MESSAGE("the temporary is " << std::string(partial ? "partial" : "whole, killed before its rename"));

  // Resuming removes the partial file and ends where the straight run did.
  const std::vector<std::string> resume = [&] {
    auto a = train_args(out);
    a.push_back("--resume");
    return a;
  }();
  const int code = wait_exit(spawn(resume, dir.file("resume.log")));
  INFO(slurp(dir.file("resume.log")));
  REQUIRE(code == 0);
  CHECK(temporaries(out).empty());
  CHECK(slurp(dir.file("resume.log")).find("removed a partial checkpoint") != std::string::npos);
  const SafetensorsFile a = load_safetensors(straight + "/last.safetensors");
  const SafetensorsFile b = load_safetensors(out + "/last.safetensors");
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    CAPTURE(a.tensors[i].first);
    CHECK(a.tensors[i].first == b.tensors[i].first);
    CHECK(values(a.tensors[i].second) == values(b.tensors[i].second));
  }
}

TEST_CASE("a full disk is reported and the previous file survives") {
  TempDir dir;
  const fs::path mnt = dir.path / "small";
  fs::create_directories(mnt);
  // A 256 KiB tmpfs; needs root (CAP_SYS_ADMIN). Skipped with a message otherwise.
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k") != 0) {
    MESSAGE("SKIPPED: cannot mount a small tmpfs here (" << std::strerror(errno) << "); disk-full is covered by "
            "the RLIMIT_FSIZE test in tests/tensor/test_safetensors.cpp only");
    return;
  }
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount(path.c_str()); }
  } unmount{mnt.string()};
  const std::string path = (mnt / "ckpt.safetensors").string();
  save_safetensors(path, {{"w", ones({1000})}});
  std::string message;
  try {
    save_safetensors(path, {{"w", ones({100000})}});  // 400 KB: more than the disk holds
  } catch (const IOError& e) {
    message = e.what();
  }
  INFO(message);
  CHECK(message.find("save_safetensors(" + path + ")") != std::string::npos);
  CHECK(message.find("No space left on device") != std::string::npos);
  CHECK(load_safetensors(path).at("w").numel() == 1000);  // the old file, whole
  CHECK(temporaries(mnt).empty());
}
